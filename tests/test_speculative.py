"""speculative_miss: the engine starts while the semantic lookup runs; a hit aborts it."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Hashable
from typing import Any

import pytest

from cache_proxy.coalesce import Coalescer, Flight, FlightRunner
from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat
from tests.support.embedders import GatedEmbedder
from tests.support.waiting import wait_until
from tests.test_pipeline import streamed_text

CHAT = "/v1/chat/completions"


def speculative_config(enabled: bool = True) -> dict[str, Any]:
    config = copy.deepcopy(TWO_TENANTS)
    config["tenants"]["acme"]["speculative_miss"] = enabled
    return config


async def post(p: ProxyUnderTest, text: str, **params: Any) -> Any:
    return await p.client.post(CHAT, json=chat(text, **params), headers=p.headers())


def started_flights(monkeypatch: pytest.MonkeyPatch, coalescer: Coalescer) -> list[Flight]:
    """Every flight started from now on, kept after the coalescer lets go of it (an aborted
    flight leaves the coalescer at once, while its task is still being cancelled)."""
    flights: list[Flight] = []
    join = coalescer.join

    def recording_join(
        key: Hashable, runner: FlightRunner, streaming: bool = True
    ) -> tuple[Flight, bool]:
        flight, leader = join(key, runner, streaming)
        if leader:
            flights.append(flight)
        return flight, leader

    monkeypatch.setattr(coalescer, "join", recording_join)
    return flights


def ended(flight: Flight) -> bool:
    return flight.task is not None and flight.task.done()


def metric(p: ProxyUnderTest, name: str, tenant: str = "acme") -> float:
    value = p.app.state.runtime.metrics.registry.get_sample_value(name, {"tenant": tenant})
    return float(value or 0.0)


async def test_engine_starts_before_the_embedding_is_done(proxy_factory: ProxyFactory) -> None:
    gates: list[GatedEmbedder] = []

    def gated(inner: Any) -> GatedEmbedder:
        gates.append(GatedEmbedder(inner))
        gates[0].gate.set()  # open while the app starts
        return gates[0]

    async with proxy_factory(speculative_config(), wrap_embedder=gated) as proxy:
        await post(proxy, "warm the embedder up")
        gates[0].gate.clear()
        pending = asyncio.create_task(post(proxy, "What is the boiling point of water?"))
        await wait_until(
            lambda: proxy.upstream.completions_called == 2,
            what="the speculative engine call while the embedding is held",
        )
        assert not pending.done()
        gates[0].gate.set()
        response = await pending
        assert response.headers["x-cache"] == "MISS"
        hit = await post(proxy, "What's the boiling point of water?")
        assert hit.headers["x-cache"] == "HIT"  # the speculative answer was stored with its vector
        assert metric(proxy, "cache_proxy_speculative_aborts_total") == 1.0  # the hit's own try


async def test_without_speculation_the_engine_waits_for_the_lookup(
    proxy_factory: ProxyFactory,
) -> None:
    gates: list[GatedEmbedder] = []

    def gated(inner: Any) -> GatedEmbedder:
        gates.append(GatedEmbedder(inner))
        gates[0].gate.set()  # open while the app starts
        return gates[0]

    async with proxy_factory(speculative_config(False), wrap_embedder=gated) as proxy:
        gates[0].gate.clear()
        arrived = gates[0].arrived
        pending = asyncio.create_task(post(proxy, "What is the boiling point of water?"))
        await wait_until(
            lambda: gates[0].arrived > arrived, what="the request to be held at the embedder"
        )
        # The lookup is under way: a speculative flight would have been joined before it.
        assert len(proxy.app.state.runtime.pipeline.coalescer) == 0
        assert proxy.upstream.completions_called == 0
        gates[0].gate.set()
        assert (await pending).headers["x-cache"] == "MISS"
        assert proxy.upstream.completions_called == 1


async def test_semantic_hit_aborts_the_engine_call_and_stores_nothing(
    proxy_factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy_factory(speculative_config()) as proxy:
        await post(proxy, "How do I reset my router password? [[slow:0.02]]")
        pipeline = proxy.app.state.runtime.pipeline
        cache = pipeline.store.tenant("acme")
        assert len(cache) == 1
        flights = started_flights(monkeypatch, pipeline.coalescer)
        hit = await post(proxy, "How can I reset the password of my router? [[slow:0.02]]")
        assert hit.headers["x-cache"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
        await wait_until(
            lambda: proxy.upstream.completions_called == 2, what="the speculative engine call"
        )
        assert metric(proxy, "cache_proxy_speculative_aborts_total") == 1.0
        assert len(flights) == 1  # the hit's own speculative flight
        await wait_until(lambda: ended(flights[0]), what="the aborted flight's task to end")
        assert len(cache) == 1  # the aborted answer was never stored
        assert len(pipeline.coalescer) == 0


async def test_exact_hits_never_start_the_engine(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(speculative_config()) as proxy:
        await post(proxy, "What is the capital of France?")
        again = await post(proxy, "What is the capital of France?")
        assert again.headers["x-cache-match"] == "exact"
        assert proxy.upstream.completions_called == 1
        assert metric(proxy, "cache_proxy_speculative_aborts_total") == 0.0


async def test_streamed_speculative_miss_relays_the_whole_answer(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(speculative_config()) as proxy:
        streamed = await post(proxy, "Name three rivers in Europe.", stream=True)
        assert streamed.headers["x-cache"] == "MISS"
        assert streamed.text.endswith("data: [DONE]\n\n")
        replay = await post(proxy, "Name three rivers in Europe.")
        assert replay.headers["x-cache"] == "HIT"
        stored = replay.json()["choices"][0]["message"]["content"]
        assert stored.endswith("Name three rivers in Europe.")
        assert streamed_text(streamed.text) == stored


async def test_other_tenants_are_not_speculative(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(speculative_config()) as proxy:
        await proxy.client.post(
            CHAT,
            json=chat("How do I reset my router password?"),
            headers=proxy.headers("sk-globex-1"),
        )
        hit = await proxy.client.post(
            CHAT,
            json=chat("How can I reset the password of my router?"),
            headers=proxy.headers("sk-globex-1"),
        )
        assert hit.headers["x-cache"] == "HIT"
        assert proxy.upstream.completions_called == 1
        assert metric(proxy, "cache_proxy_speculative_aborts_total", "globex") == 0.0

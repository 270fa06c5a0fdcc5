"""speculative_miss: the engine starts while the semantic lookup runs; a hit aborts it."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat
from tests.support.embedders import GatedEmbedder
from tests.test_pipeline import streamed_text

CHAT = "/v1/chat/completions"


def speculative_config(enabled: bool = True) -> dict[str, Any]:
    config = copy.deepcopy(TWO_TENANTS)
    config["tenants"]["acme"]["speculative_miss"] = enabled
    return config


async def post(p: ProxyUnderTest, text: str, **params: Any) -> Any:
    return await p.client.post(CHAT, json=chat(text, **params), headers=p.headers())


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


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
        await until(lambda: proxy.upstream.completions_called == 2)  # embedding still held
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
        pending = asyncio.create_task(post(proxy, "What is the boiling point of water?"))
        await asyncio.sleep(0.3)
        assert proxy.upstream.completions_called == 0
        gates[0].gate.set()
        assert (await pending).headers["x-cache"] == "MISS"
        assert proxy.upstream.completions_called == 1


async def test_semantic_hit_aborts_the_engine_call_and_stores_nothing(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(speculative_config()) as proxy:
        await post(proxy, "How do I reset my router password? [[slow:0.02]]")
        cache = proxy.app.state.runtime.pipeline.store.tenant("acme")
        assert len(cache) == 1
        hit = await post(proxy, "How can I reset the password of my router? [[slow:0.02]]")
        assert hit.headers["x-cache"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
        await until(lambda: proxy.upstream.completions_called == 2)  # it was started
        assert metric(proxy, "cache_proxy_speculative_aborts_total") == 1.0
        await asyncio.sleep(0.5)  # longer than the scripted answer takes
        assert len(cache) == 1  # the aborted answer was never stored
        assert len(proxy.app.state.runtime.pipeline.coalescer) == 0


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

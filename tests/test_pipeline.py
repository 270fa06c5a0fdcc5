"""The request path through the in-process app, with the real embedder and FAISS."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.servers import free_port, serve_in_thread

CHAT = "/v1/chat/completions"


def sse_events(text: str) -> list[Any]:
    payloads = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def streamed_text(text: str) -> str:
    events = [e for e in sse_events(text) if e != "[DONE]" and e.get("choices")]
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events)


async def post(
    p: ProxyUnderTest, body: dict[str, Any], key: str = "sk-acme-1", **headers: str
) -> httpx.Response:
    return await p.client.post(CHAT, json=body, headers=p.headers(key, **headers))


async def test_miss_then_exact_hit_does_not_call_upstream(proxy: ProxyUnderTest) -> None:
    first = await post(proxy, chat("What is the capital of France?"))
    second = await post(proxy, chat("What is the capital of France?"))
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert second.headers["x-cache-match"] == "exact"
    assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    assert second.json()["id"] != first.json()["id"]
    assert proxy.upstream.completions_called == 1


async def test_paraphrase_is_a_semantic_hit(proxy: ProxyUnderTest) -> None:
    await post(proxy, chat("How do I reset my router password?"))
    hit = await post(proxy, chat("How can I reset the password of my router?"))
    assert hit.headers["x-cache"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
    assert 0.9 <= float(hit.headers["x-cache-similarity"]) < 1.0
    assert proxy.upstream.completions_called == 1


async def test_prompts_longer_than_the_embedder_window_match_exactly_only(
    proxy: ProxyUnderTest,
) -> None:
    shared = "Here is a long report about quarterly results and many details. " * 40
    await post(proxy, chat(shared + "Question: what was the revenue in March?"))
    other = await post(proxy, chat(shared + "Question: who is the CEO's favourite poet?"))
    assert other.headers["x-cache"] == "MISS"
    again = await post(proxy, chat(shared + "Question: what was the revenue in March?"))
    assert again.headers["x-cache-match"] == "exact"


async def test_unrelated_prompt_misses(proxy: ProxyUnderTest) -> None:
    await post(proxy, chat("How do I reset my router password?"))
    other = await post(proxy, chat("What is a good recipe for banana bread?"))
    assert other.headers["x-cache"] == "MISS"
    assert proxy.upstream.completions_called == 2


async def test_other_tenant_never_served_from_first_tenants_entries(proxy: ProxyUnderTest) -> None:
    await post(proxy, chat("Tell me a secret about acme"), key="sk-acme-1")
    other = await post(proxy, chat("Tell me a secret about acme"), key="sk-globex-1")
    assert other.headers["x-cache"] == "MISS"
    assert proxy.upstream.completions_called == 2


async def test_different_system_prompt_or_params_is_another_partition(
    proxy: ProxyUnderTest,
) -> None:
    base = chat("Summarise the plot of Hamlet")
    await post(proxy, base)
    with_system = {
        **base,
        "messages": [{"role": "system", "content": "Answer in French."}, *base["messages"]],
    }
    other_params = {**base, "max_tokens": 5}
    assert (await post(proxy, with_system)).headers["x-cache"] == "MISS"
    assert (await post(proxy, other_params)).headers["x-cache"] == "MISS"
    assert (await post(proxy, {**base, "user": "someone"})).headers["x-cache"] == "HIT"


async def test_earlier_turns_must_match_exactly(proxy: ProxyUnderTest) -> None:
    def convo(first_answer: str) -> dict[str, Any]:
        return {
            "model": "tiny",
            "messages": [
                {"role": "user", "content": "Pick a number"},
                {"role": "assistant", "content": first_answer},
                {"role": "user", "content": "Double it"},
            ],
        }

    await post(proxy, convo("7"))
    assert (await post(proxy, convo("7"))).headers["x-cache"] == "HIT"
    assert (await post(proxy, convo("8"))).headers["x-cache"] == "MISS"


async def test_json_filled_entry_replays_as_valid_sse(proxy: ProxyUnderTest) -> None:
    filled = await post(proxy, chat("Explain TCP slow start"))
    replay = await post(
        proxy, chat("Explain TCP slow start", stream=True, stream_options={"include_usage": True})
    )
    assert replay.headers["x-cache"] == "HIT"
    assert replay.headers["content-type"].startswith("text/event-stream")
    events = sse_events(replay.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({e["id"] for e in events[:-1]}) == 1
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] > 0
    assert streamed_text(replay.text) == filled.json()["choices"][0]["message"]["content"]


async def test_stream_filled_entry_replays_as_json(proxy: ProxyUnderTest) -> None:
    streamed = await post(proxy, chat("Explain UDP", stream=True))
    assert streamed.headers["x-cache"] == "MISS"
    assert all(e == "[DONE]" or "usage" not in e for e in sse_events(streamed.text))
    replay = await post(proxy, chat("Explain UDP"))
    assert replay.headers["x-cache"] == "HIT"
    body = replay.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == streamed_text(streamed.text)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] > 0


async def test_completions_endpoint_caches_and_replays(proxy: ProxyUnderTest) -> None:
    body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 8}
    first = await proxy.client.post("/v1/completions", json=body, headers=proxy.headers())
    again = await proxy.client.post(
        "/v1/completions", json={**body, "stream": True}, headers=proxy.headers()
    )
    assert first.headers["x-cache"] == "MISS" and again.headers["x-cache"] == "HIT"
    text = "".join(
        e["choices"][0]["text"] for e in sse_events(again.text) if e != "[DONE]" and e["choices"]
    )
    assert text == first.json()["choices"][0]["text"]
    assert sse_events(again.text)[0]["object"] == "text_completion"


async def test_concurrent_identical_misses_share_one_upstream_call(proxy: ProxyUnderTest) -> None:
    prompt = "Coalesce me please [[slow:0.05]]"
    results = await asyncio.gather(
        *[post(proxy, chat(prompt, stream=i % 2 == 0)) for i in range(8)]
    )
    assert proxy.upstream.completions_called == 1
    assert all(r.status_code == 200 and r.headers["x-cache"] == "MISS" for r in results)
    assert sum("x-cache-coalesced" in r.headers for r in results) == 7
    texts = {
        streamed_text(r.text) if i % 2 == 0 else r.json()["choices"][0]["message"]["content"]
        for i, r in enumerate(results)
    }
    assert len(texts) == 1


@pytest.mark.parametrize(("marker", "status"), [("[[500]]", 502), ("[[503]]", 503)])
async def test_upstream_failures_map_and_are_not_cached(
    proxy: ProxyUnderTest, marker: str, status: int
) -> None:
    for _ in range(2):
        response = await post(proxy, chat(f"fail please {marker}"))
        assert response.status_code == status
        assert response.json()["error"]["message"]
    assert proxy.upstream.completions_called == 2


async def test_upstream_4xx_is_passed_through(proxy: ProxyUnderTest) -> None:
    response = await post(proxy, chat("bad for the engine [[400]]"))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "scripted 400"


@pytest.mark.parametrize("marker", ["[[cut]]", "[[nofinish]]", "[[midstream-error]]"])
async def test_incomplete_answers_are_never_stored(proxy: ProxyUnderTest, marker: str) -> None:
    prompt = f"an answer that breaks {marker}"
    streamed = await post(proxy, chat(prompt, stream=True))
    assert streamed.headers["x-cache"] == "MISS"
    assert sse_events(streamed.text)[-1] != "[DONE]" or marker == "[[nofinish]]"
    again = await post(proxy, chat(prompt))
    assert again.headers.get("x-cache") != "HIT"
    assert proxy.upstream.completions_called == 2


@pytest.mark.parametrize("marker", ["[[cut]]", "[[nofinish]]"])
async def test_incomplete_json_answers_are_never_stored(proxy: ProxyUnderTest, marker: str) -> None:
    for _ in range(2):  # no finish_reason: the engine's answer is malformed, a 502 (issue 12)
        response = await post(proxy, chat(f"json that breaks {marker}"))
        assert response.status_code == 502
        assert response.headers.get("x-cache") != "HIT"
    assert proxy.upstream.completions_called == 2


async def test_json_miss_is_forwarded_as_json_and_stream_miss_as_stream(
    proxy: ProxyUnderTest,
) -> None:
    await post(proxy, chat("json please"))
    assert proxy.upstream.last_body["stream"] is False
    assert "stream_options" not in proxy.upstream.last_body
    await post(proxy, chat("stream please", stream=True))
    assert proxy.upstream.last_body["stream"] is True
    assert proxy.upstream.last_body["stream_options"] == {"include_usage": True}


async def test_streaming_followers_of_a_json_leader_get_valid_sse(proxy: ProxyUnderTest) -> None:
    prompt = "JSON leads this flight [[slow:0.01]]"
    results = await asyncio.gather(*[post(proxy, chat(prompt, stream=i > 0)) for i in range(4)])
    assert proxy.upstream.completions_called == 1
    leader_text = results[0].json()["choices"][0]["message"]["content"]
    for follower in results[1:]:
        assert sse_events(follower.text)[-1] == "[DONE]"
        assert streamed_text(follower.text) == leader_text


async def test_timeout_is_504(proxy_factory: ProxyFactory) -> None:
    upstream = ScriptedUpstream()
    with serve_in_thread(upstream.app) as url:
        config = {**TWO_TENANTS, "upstream": {"url": url, "read_timeout_s": 0.2}}
        async with proxy_factory(config, upstream) as p:
            response = await post(p, chat("too slow [[slow:1]]"))
            assert response.status_code == 504
            assert response.json()["error"]["type"] == "upstream_error"
            assert (await post(p, chat("too slow [[slow:1]]"))).status_code == 504
            assert p.upstream.completions_called == 2


async def test_unreachable_upstream_is_502(proxy_factory: ProxyFactory) -> None:
    config = {**TWO_TENANTS, "upstream": {"url": f"http://127.0.0.1:{free_port()}"}}
    async with proxy_factory(config, ScriptedUpstream()) as p:
        response = await post(p, chat("anyone there?"))
        assert response.status_code == 502
        assert "unreachable" in response.json()["error"]["message"]


async def test_cache_control_no_cache_skips_lookup_but_stores(proxy: ProxyUnderTest) -> None:
    await post(proxy, chat("Cache control question"))
    fresh = await post(proxy, chat("Cache control question"), **{"cache-control": "no-cache"})
    assert fresh.headers["x-cache"] == "MISS"
    assert proxy.upstream.completions_called == 2
    hit = await post(proxy, chat("Cache control question"))
    assert hit.json()["choices"][0]["message"] == fresh.json()["choices"][0]["message"]


async def test_cache_control_no_store_does_not_store(proxy: ProxyUnderTest) -> None:
    await post(proxy, chat("Private question"), **{"cache-control": "no-store"})
    assert (await post(proxy, chat("Private question"))).headers["x-cache"] == "MISS"


@pytest.mark.parametrize(
    ("params", "reason"),
    [({"n": 2}, "n>1"), ({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "logprobs")],
)
async def test_non_reusable_requests_bypass(
    proxy: ProxyUnderTest, params: dict[str, Any], reason: str
) -> None:
    for _ in range(2):
        response = await post(proxy, chat("bypass me", **params))
        assert response.headers["x-cache"] == "BYPASS"
        assert response.headers["x-cache-bypass-reason"] == reason
    assert proxy.upstream.completions_called == 2


async def test_tenant_max_temperature_bypasses_above(proxy_factory: ProxyFactory) -> None:
    config = {
        **TWO_TENANTS,
        "tenants": {"acme": {"api_keys": ["sk-acme-1"], "max_temperature": 0.5}},
    }
    async with proxy_factory(config) as p:
        hot = await post(p, chat("hot", temperature=1.0))
        cool = await post(p, chat("cool", temperature=0.2))
        assert hot.headers["x-cache"] == "BYPASS" and cool.headers["x-cache"] == "MISS"


async def test_streaming_bypass_passes_upstream_stream_through(proxy: ProxyUnderTest) -> None:
    response = await post(proxy, chat("stream bypass", stream=True, n=2))
    assert response.headers["x-cache"] == "BYPASS"
    assert sse_events(response.text)[-1] == "[DONE]"


async def test_tenant_key_is_never_forwarded_but_the_engine_key_is(
    proxy_factory: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGINE_KEY", "sk-engine-9")
    config = {**TWO_TENANTS, "upstream": {"url": "http://engine.test", "api_key_env": "ENGINE_KEY"}}
    async with proxy_factory(config) as p:
        await post(p, chat("whose key?"))
        assert "sk-acme-1" not in json.dumps(p.upstream.last_headers)
        assert p.upstream.last_headers["authorization"] == "Bearer sk-engine-9"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 9},
            "temperature",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
    ],
)
async def test_malformed_request_is_400_naming_the_field(
    proxy: ProxyUnderTest, body: dict[str, Any], param: str
) -> None:
    response = await post(proxy, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert param in response.json()["error"]["message"]
    assert proxy.upstream.completions_called == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_non_json_body_is_400(proxy: ProxyUnderTest, raw: bytes) -> None:
    response = await proxy.client.post(CHAT, content=raw, headers=proxy.headers())
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_body_over_limit_is_413(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory({**TWO_TENANTS, "server": {"max_body_bytes": 200}}) as p:
        response = await post(p, chat("x" * 500))
        assert response.status_code == 413
        assert p.upstream.completions_called == 0


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Bearer nope"}, {"authorization": "Basic c2stYWNtZS0x"}]
)
async def test_unknown_or_missing_key_is_401(
    proxy: ProxyUnderTest, headers: dict[str, str]
) -> None:
    response = await proxy.client.post(CHAT, json=chat("hi"), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_trusted_tenant_header_only_when_configured(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory() as p:
        response = await p.client.post(CHAT, json=chat("hi"), headers={"x-tenant-id": "acme"})
        assert response.status_code == 401
    config = {**TWO_TENANTS, "server": {"trusted_tenant_header": "X-Tenant-ID"}}
    async with proxy_factory(config) as p:
        ok = await p.client.post(CHAT, json=chat("hi"), headers={"x-tenant-id": "globex"})
        bad = await p.client.post(CHAT, json=chat("hi"), headers={"x-tenant-id": "initech"})
        assert ok.status_code == 200 and bad.status_code == 401


async def test_lru_bound_evicts_and_removes_vectors(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory({**TWO_TENANTS, "cache": {"max_entries": 2}}) as p:
        for text in ("first question about cats", "second about dogs", "third about birds"):
            await post(p, chat(text))
        assert (await post(p, chat("first question about cats"))).headers["x-cache"] == "MISS"
        assert (await post(p, chat("third about birds"))).headers["x-cache"] == "HIT"
        assert len(p.app.state.runtime.pipeline.store.tenant("acme")) == 2


async def test_metrics_count_outcomes_per_tenant(proxy: ProxyUnderTest) -> None:
    await post(proxy, chat("metric me"))
    await post(proxy, chat("metric me"))
    await post(proxy, chat("metric me", n=3))
    text = (await proxy.client.get("/metrics")).text
    assert 'cache_proxy_requests_total{outcome="miss",tenant="acme"} 1.0' in text
    assert 'cache_proxy_requests_total{outcome="hit_exact",tenant="acme"} 1.0' in text
    assert 'cache_proxy_requests_total{outcome="bypass",tenant="acme"} 1.0' in text
    assert 'cache_proxy_entries{tenant="acme"} 1.0' in text
    assert "cache_proxy_cached_completion_tokens_total" in text


async def test_a_query_past_max_prompt_chars_is_matched_exactly_only(
    proxy_factory: ProxyFactory,
) -> None:
    from tests.support.embedders import CountingEmbedder

    counting: list[CountingEmbedder] = []

    def wrap(inner: Any) -> CountingEmbedder:
        counting.append(CountingEmbedder(inner))
        return counting[0]

    config = {**TWO_TENANTS, "server": {"max_prompt_chars": 100}}
    async with proxy_factory(config, wrap_embedder=wrap) as p:
        before = len(counting[0].batches)
        long_text = "Tell me about rivers. " * 10  # 220 characters
        assert (await post(p, chat(long_text))).headers["x-cache"] == "MISS"
        assert (await post(p, chat(long_text))).headers["x-cache-match"] == "exact"
        assert (await post(p, chat(long_text + " please"))).headers["x-cache"] == "MISS"
        assert len(counting[0].batches) == before  # never embedded (nor tokenised)


async def test_a_large_body_is_checked_off_the_loop_all_the_same(proxy: ProxyUnderTest) -> None:
    items = ",".join('{"a": 1}' for _ in range(12_000)) + ', {"a": NaN}'  # ~120 KB
    raw = b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "metadata": ['
    raw += items.encode() + b"]}"
    response = await proxy.client.post(
        CHAT, content=raw, headers={**proxy.headers(), "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "metadata.12000.a"

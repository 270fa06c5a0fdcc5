"""Cache-Control on requests and the tenant TTL: parsing, and their effect through the
in-process proxy (real embedder and FAISS, scripted upstream)."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import httpx
import pytest

from cache_proxy.pipeline import CacheControl
from cache_proxy.store import Answer, Entry, TenantCache
from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat
from tests.support.waiting import wait_until

CHAT = "/v1/chat/completions"


# ---- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "lookup", "store", "max_age"),
    [
        (None, True, True, None),
        ("", True, True, None),
        ("no-cache", False, True, None),
        ("No-Cache", False, True, None),
        ("no-store", True, False, None),
        ("max-age=30", True, True, 30.0),
        ("MAX-AGE=0", True, False, 0.0),  # nothing may be kept: it leads no storing flight
        ("max-age=\u00b2", True, True, None),  # a digit to str.isdigit, no number
        ("max-age=10, max-age=5", True, True, 5.0),  # repeated: the stricter one
        ("max-age=", True, True, None),
        ("max-age=abc", True, True, None),
        ("max-age=-5", True, True, None),
        ("max-age=1.5", True, True, None),
        ("max-age", True, True, None),
        ("max-stale=30", True, True, None),
        ("no-cache, no-store", False, False, None),
        ("no-store, max-age=60", True, False, 60.0),
        (" no-cache ,max-age=5 , no-store", False, False, 5.0),
        ("private, max-age=nope, no-cache", False, True, None),
    ],
)
def test_from_header(header: str | None, lookup: bool, store: bool, max_age: float | None) -> None:
    assert CacheControl.from_header(header) == CacheControl(lookup, store, max_age)


def test_ttl_is_the_shorter_and_never_lengthened() -> None:
    assert CacheControl().ttl_s(None) is None
    assert CacheControl().ttl_s(60.0) == 60.0
    assert CacheControl(max_age=30.0).ttl_s(None) == 30.0
    assert CacheControl(max_age=30.0).ttl_s(60.0) == 30.0
    assert CacheControl(max_age=300.0).ttl_s(60.0) == 60.0  # a request cannot lengthen it
    assert CacheControl(max_age=0.0).ttl_s(60.0) == 0.0


def test_fresh_compares_the_entry_age_with_max_age() -> None:
    cache = TenantCache(4, 10)
    answer = Answer("chat", "tiny", "x", "stop")
    entry: Entry = cache.put("p", "e", "q", answer, None, created_at=time.time() - 5.0)
    assert CacheControl().fresh(entry)
    assert CacheControl(max_age=60.0).fresh(entry)
    assert not CacheControl(max_age=2.0).fresh(entry)
    assert not CacheControl(max_age=0.0).fresh(entry)


# ---- through the proxy ----------------------------------------------------------------------


def acme_ttl(ttl_s: float) -> dict[str, Any]:
    config = copy.deepcopy(TWO_TENANTS)
    config["tenants"]["acme"]["ttl_s"] = ttl_s
    return config


async def post(
    p: ProxyUnderTest, body: dict[str, Any], key: str = "sk-acme-1", **headers: str
) -> httpx.Response:
    response = await p.client.post(CHAT, json=body, headers=p.headers(key, **headers))
    assert response.status_code == 200, response.text
    return response


def cache_of(p: ProxyUnderTest, tenant: str) -> TenantCache:
    return p.app.state.runtime.pipeline.store.tenant(tenant)  # type: ignore[no-any-return]


async def wait_past(moment: float) -> None:
    """Waits until the wall clock is past `moment` (an expiry or an age limit)."""
    deadline = time.monotonic() + max(0.0, moment - time.time()) + 5.0
    while time.time() <= moment:
        assert time.monotonic() < deadline, "the clock did not pass the moment"
        await asyncio.sleep(0.05)


async def test_tenant_ttl_expires_the_answer(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(acme_ttl(1)) as p:
        text = "What is the boiling point of water at sea level?"
        first = await post(p, chat(text))
        assert first.headers["x-cache"] == "MISS"
        entry = cache_of(p, "acme").peek_exact(first.headers["x-cache-entry"])
        assert entry is not None and entry.expires_at is not None
        assert entry.expires_at == pytest.approx(entry.created_at + 1.0)
        assert (await post(p, chat(text))).headers["x-cache"] == "HIT"
        assert p.upstream.completions_called == 1

        await wait_past(entry.expires_at)
        again = await post(p, chat(text))
        assert again.headers["x-cache"] == "MISS"  # neither the exact nor the semantic tier
        assert p.upstream.completions_called == 2
        assert (await post(p, chat(text))).headers["x-cache"] == "HIT"  # stored anew
        assert p.upstream.completions_called == 2


async def test_tenant_ttl_applies_to_semantic_hits_too(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(acme_ttl(1)) as p:
        first = await post(p, chat("How do I reset my router password?"))
        paraphrase = chat("How can I reset the password of my router?")
        hit = await post(p, paraphrase)
        assert hit.headers["x-cache"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
        entry = cache_of(p, "acme").peek_exact(first.headers["x-cache-entry"])
        assert entry is not None and entry.expires_at is not None
        await wait_past(entry.expires_at)
        assert (await post(p, paraphrase)).headers["x-cache"] == "MISS"
        assert p.upstream.completions_called == 2


async def test_tenant_without_ttl_stores_without_expiry(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(acme_ttl(1)) as p:
        first = await post(p, chat("Name a prime number"), key="sk-globex-1")
        entry = cache_of(p, "globex").peek_exact(first.headers["x-cache-entry"])
        assert entry is not None and entry.expires_at is None


async def test_max_age_zero_stores_nothing(proxy: ProxyUnderTest) -> None:
    text = "Give me a random fun fact"
    first = await post(proxy, chat(text), **{"cache-control": "max-age=0"})
    assert first.headers["x-cache"] == "MISS"
    assert len(cache_of(proxy, "acme")) == 0
    second = await post(proxy, chat(text))
    assert second.headers["x-cache"] == "MISS"
    assert proxy.upstream.completions_called == 2
    assert (await post(proxy, chat(text))).headers["x-cache"] == "HIT"  # a plain one stores


async def test_max_age_shortens_the_stored_ttl(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(acme_ttl(3600)) as p:
        first = await post(p, chat("Which ocean is the largest?"), **{"cache-control": "max-age=5"})
        entry = cache_of(p, "acme").peek_exact(first.headers["x-cache-entry"])
        assert entry is not None and entry.expires_at is not None
        assert entry.expires_at == pytest.approx(entry.created_at + 5.0)


async def test_max_age_skips_an_older_entry_that_others_still_get(proxy: ProxyUnderTest) -> None:
    text = "What is the tallest mountain in Africa?"
    first = await post(proxy, chat(text), key="sk-globex-1")
    assert first.headers["x-cache"] == "MISS"
    entry = cache_of(proxy, "globex").peek_exact(first.headers["x-cache-entry"])
    assert entry is not None and entry.expires_at is None  # globex has no ttl
    assert (
        await post(proxy, chat(text), key="sk-globex-1", **{"cache-control": "max-age=60"})
    ).headers["x-cache"] == "HIT"  # young enough

    await wait_past(entry.created_at + 1.0)
    plain = await post(proxy, chat(text), key="sk-globex-1")
    assert plain.headers["x-cache"] == "HIT" and plain.headers["x-cache-match"] == "exact"
    assert proxy.upstream.completions_called == 1
    strict = await post(proxy, chat(text), key="sk-globex-1", **{"cache-control": "max-age=1"})
    assert strict.headers["x-cache"] == "MISS"
    assert proxy.upstream.completions_called == 2


async def test_max_age_skips_older_semantic_candidates(proxy: ProxyUnderTest) -> None:
    first = await post(proxy, chat("How do I reset my router password?"), key="sk-globex-1")
    entry = cache_of(proxy, "globex").peek_exact(first.headers["x-cache-entry"])
    assert entry is not None
    await wait_past(entry.created_at + 1.0)
    paraphrase = chat("How can I reset the password of my router?")
    plain = await post(proxy, paraphrase, key="sk-globex-1")  # a hit does not store
    assert plain.headers["x-cache"] == "HIT" and plain.headers["x-cache-match"] == "semantic"
    assert plain.headers["x-cache-entry"] == first.headers["x-cache-entry"]
    strict = await post(proxy, paraphrase, key="sk-globex-1", **{"cache-control": "max-age=1"})
    assert strict.headers["x-cache"] == "MISS"
    assert proxy.upstream.completions_called == 2


async def test_no_cache_skips_the_lookup_but_stores(proxy: ProxyUnderTest) -> None:
    text = "Spell the word necessary"
    await post(proxy, chat(text))
    fresh = await post(proxy, chat(text), **{"cache-control": "no-cache"})
    assert fresh.headers["x-cache"] == "MISS" and proxy.upstream.completions_called == 2
    again = await post(proxy, chat(text))
    assert again.headers["x-cache"] == "HIT"
    assert again.json()["choices"][0]["message"] == fresh.json()["choices"][0]["message"]


async def test_no_store_answers_but_keeps_nothing(proxy: ProxyUnderTest) -> None:
    text = "Translate hello to Spanish"
    first = await post(proxy, chat(text), **{"cache-control": "no-store"})
    assert first.headers["x-cache"] == "MISS" and "x-cache-entry" not in first.headers
    assert (await post(proxy, chat(text))).headers["x-cache"] == "MISS"
    assert proxy.upstream.completions_called == 2


async def test_a_non_ascii_digit_in_max_age_is_ignored(proxy: ProxyUnderTest) -> None:
    headers = {**proxy.headers(), "cache-control": b"max-age=\xb2"}  # latin-1 '²'
    response = await proxy.client.post(CHAT, json=chat("Ignored max-age"), headers=headers)  # type: ignore[arg-type]
    assert response.status_code == 200 and response.headers["x-cache"] == "MISS"


async def test_max_age_zero_does_not_keep_a_plain_request_from_storing(
    proxy: ProxyUnderTest,
) -> None:
    text = "Tell me about owls [[slow:0.05]]"
    first = asyncio.create_task(post(proxy, chat(text), **{"cache-control": "max-age=0"}))
    await wait_until(
        lambda: proxy.upstream.completions_called > 0, what="the first request at the engine"
    )
    plain = await post(proxy, chat(text))
    assert "x-cache-entry" in plain.headers and "x-cache-entry" not in (await first).headers
    assert (await post(proxy, chat(text))).headers["x-cache"] == "HIT"

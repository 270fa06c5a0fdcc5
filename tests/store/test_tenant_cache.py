from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pytest

from cache_proxy.config import IndexSettings
from cache_proxy.store import Answer, CacheStore, TenantCache

DIM = 8


def unit(seed: int) -> npt.NDArray[np.float32]:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def answer(text: str, model: str = "m") -> Answer:
    return Answer("chat", model, text, "stop")


@pytest.mark.parametrize("kind", ["flat", "ivf"])
async def test_search_finds_own_vector_first(kind: str) -> None:
    cache = TenantCache(DIM, 100, IndexSettings(kind))  # type: ignore[arg-type]
    for i in range(20):
        cache.put("p", f"e{i}", f"q{i}", answer(str(i)), unit(i))
    hits = await cache.search("p", unit(7), 3)
    assert hits[0].entry.query_text == "q7" and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert await cache.search("other-partition", unit(7), 3) == []


@pytest.mark.parametrize("kind", ["flat", "ivf"])
async def test_lru_eviction_removes_the_vector_too(kind: str) -> None:
    cache = TenantCache(DIM, 3, IndexSettings(kind))  # type: ignore[arg-type]
    for i in range(3):
        cache.put("p", f"e{i}", f"q{i}", answer(str(i)), unit(i))
    assert cache.get_exact("e0") is not None  # e0 becomes most recent; e1 is now oldest
    cache.put("p", "e3", "q3", answer("3"), unit(3))
    assert cache.get_exact("e1") is None and len(cache) == 3 and cache.evictions == 1
    assert all(h.entry.query_text != "q1" for h in await cache.search("p", unit(1), 3))


async def test_replacing_an_exact_key_keeps_one_entry() -> None:
    cache = TenantCache(DIM, 10)
    cache.put("p", "e", "q", answer("old"), unit(1))
    cache.put("p", "e", "q", answer("new"), unit(1))
    assert len(cache) == 1 and cache.get_exact("e").answer.content == "new"  # type: ignore[union-attr]
    assert len(await cache.search("p", unit(1), 5)) == 1


async def test_invalidate_by_model_bumps_generation() -> None:
    cache = TenantCache(DIM, 10)
    cache.put("p", "a", "qa", answer("x", model="m1"), unit(1))
    cache.put("p", "b", "qb", answer("y", model="m2"), None)
    assert cache.invalidate(model="m1") == 1 and cache.generation == 1
    assert cache.get_exact("b") is not None and await cache.search("p", unit(1), 2) == []


async def test_tenants_are_separate_stores() -> None:
    store = CacheStore(DIM, 10)
    store.tenant("acme").put("p", "e", "q", answer("acme's"), unit(1))
    assert store.tenant("globex").get_exact("e") is None
    assert await store.tenant("globex").search("p", unit(1), 4) == []
    assert store.invalidate(tenant="globex") == 0 and len(store.tenant("acme")) == 1


# ---- expiry ---------------------------------------------------------------------------------


async def test_expired_entry_is_never_returned_and_is_dropped() -> None:
    cache = TenantCache(DIM, 10)
    past = time.time() - 1.0
    cache.put("p", "gone", "q-gone", answer("old"), unit(1), expires_at=past)
    cache.put("p", "live", "q-live", answer("new"), unit(2), expires_at=time.time() + 3600)
    assert len(cache) == 2
    hits = await cache.search("p", unit(1), 5)  # the expired vector is nearest, yet never a hit
    assert [h.entry.exact for h in hits] == ["live"]
    assert cache.peek_exact("gone") is None
    assert len(cache) == 1  # dropped, vector included
    assert [h.entry.exact for h in await cache.search("p", unit(1), 5)] == ["live"]
    cache.put("p", "gone2", "q", answer("x"), unit(3), expires_at=past)
    assert cache.get_exact("gone2") is None and len(cache) == 1
    assert cache.get_exact("live") is not None and cache.peek_exact("live") is not None


async def test_entry_without_expiry_never_expires() -> None:
    cache = TenantCache(DIM, 10)
    entry = cache.put("p", "e", "q", answer("forever"), unit(1))
    assert entry.expires_at is None and not entry.expired(time.time() + 10**9)
    assert cache.sweep(time.time() + 10**9) == 0
    assert cache.get_exact("e") is not None
    assert [h.entry.exact for h in await cache.search("p", unit(1), 1)] == ["e"]


async def test_sweep_removes_exactly_the_expired_entries() -> None:
    cache = TenantCache(DIM, 10)
    now = time.time()
    for i, offset in enumerate([100.0, 200.0, 300.0, 400.0]):
        cache.put("p", f"e{i}", f"q{i}", answer(str(i)), unit(i), expires_at=now + offset)
    cache.put("p", "forever", "qf", answer("f"), unit(9))
    assert cache.sweep(now + 250.0) == 2
    assert {e.exact for e in cache.entries()} == {"e2", "e3", "forever"}
    assert {h.entry.exact for h in await cache.search("p", unit(0), 10)} == {"e2", "e3", "forever"}
    assert cache.sweep(now + 250.0) == 0  # nothing more is due
    assert cache.sweep(now + 10**6) == 2 and [e.exact for e in cache.entries()] == ["forever"]


def test_sweep_ignores_the_expiry_of_a_replaced_or_removed_entry() -> None:
    cache = TenantCache(DIM, 10)
    now = time.time()
    cache.put("p", "e", "q", answer("short-lived"), unit(1), expires_at=now + 10)
    cache.put("p", "e", "q", answer("replacement"), unit(1), expires_at=now + 1000)
    cache.put("p", "r", "qr", answer("removed"), unit(2), expires_at=now + 10)
    assert cache.remove_exact("r")
    assert cache.sweep(now + 20) == 0  # the old heap items name entries that are gone
    assert cache.peek_exact("e").answer.content == "replacement"  # type: ignore[union-attr]
    assert cache.sweep(now + 2000) == 1 and len(cache) == 0


def test_expiry_heap_stays_bounded_when_entries_are_evicted() -> None:
    # `_expiries` is private, but its size is the property under test: evicted entries leave
    # their heap items behind (removal is lazy), and nothing public shows the heap growing.
    cache = TenantCache(DIM, 10)
    now = time.time()
    high_water = 0
    for i in range(5000):
        cache.put("p", f"e{i}", f"q{i}", answer(str(i)), None, expires_at=now + 3600 + i)
        high_water = max(high_water, len(cache._expiries))
    assert len(cache) == 10 and cache.evictions == 4990
    assert high_water < 1100  # a small constant over max_entries, not one item per put
    assert cache.sweep(now + 10**6) == 10 and len(cache) == 0  # the compacted heap still works


def test_store_sweep_covers_every_tenant() -> None:
    store = CacheStore(DIM, 10)
    now = time.time()
    store.tenant("acme").put("p", "a", "qa", answer("a"), unit(1), expires_at=now + 5)
    store.tenant("globex").put("p", "g", "qg", answer("g"), unit(2), expires_at=now + 5)
    store.tenant("globex").put("p", "k", "qk", answer("k"), unit(3), expires_at=now + 50)
    assert store.sweep(now + 10) == 2
    assert len(store.tenant("acme")) == 0 and len(store.tenant("globex")) == 1


def test_replace_tenant_keeps_a_stale_store_from_landing() -> None:
    store = CacheStore(DIM, 10)
    before = store.tenant("acme").generation
    fresh = store.new_tenant_cache()
    fresh.put("p", "e", "q", answer("loaded"), unit(1))
    store.replace_tenant("acme", fresh)
    assert store.tenant("acme") is fresh and store.tenant("acme").generation > before
    assert store.tenant("acme").get_exact("e") is not None


async def test_expired_entries_do_not_take_the_search_slots_of_live_ones() -> None:
    cache = TenantCache(DIM, 100)
    now = time.time()
    for i in range(4):  # the four nearest to unit(0) have expired
        near = unit(0) + 0.01 * unit(100 + i)
        unit_near = (near / np.linalg.norm(near)).astype(np.float32)
        cache.put("p", f"old{i}", f"q{i}", answer("old"), unit_near, now - 1)
    live = (unit(0) + 0.5 * unit(7)).astype(np.float32)
    cache.put("p", "live", "q-live", answer("live"), live)
    hits = await cache.search("p", unit(0), 4)
    assert [h.entry.exact for h in hits] == ["live"]
    assert len(cache) == 1  # the expired ones left the index on the way


@pytest.mark.parametrize("kind", ["flat", "ivf"])
async def test_invalidating_a_model_across_partitions_keeps_the_rest_searchable(kind: str) -> None:
    cache = TenantCache(DIM, 100, IndexSettings(kind))  # type: ignore[arg-type]
    for i in range(40):
        model = "old" if i % 2 else "new"
        cache.put(f"p{i % 3}", f"e{i}", f"q{i}", answer(str(i), model), unit(i))
    generation = cache.generation
    assert cache.invalidate("old") == 20 and len(cache) == 20 and cache.generation > generation
    for i in range(40):
        found = await cache.search(f"p{i % 3}", unit(i), 1)
        kept = i % 2 == 0
        assert (cache.get_exact(f"e{i}") is not None) == kept
        assert bool(found and found[0].entry.exact == f"e{i}") == kept
    assert cache.invalidate() == 20 and len(cache) == 0
    assert [await cache.search(f"p{p}", unit(0), 1) for p in range(3)] == [[], [], []]
    cache.put("p0", "again", "q", answer("x"), unit(1))  # usable after a flush
    assert (await cache.search("p0", unit(1), 1))[0].entry.exact == "again"


# ---- memory bound ---------------------------------------------------------------------------


def test_max_bytes_evicts_least_recently_used_entries_first() -> None:
    first = TenantCache(DIM, 1000).put("p", "e0", "q", answer("x" * 1000), unit(0))
    cache = TenantCache(DIM, 1000, max_bytes=int(3.5 * first.size_bytes))
    for i in range(3):
        cache.put("p", f"e{i}", "q", answer("x" * 1000), unit(i))
    assert cache.get_exact("e0") is not None  # e1 is now the least recently used
    cache.put("p", "e3", "q", answer("x" * 1000), unit(3))
    assert cache.get_exact("e1") is None and len(cache) == 3 and cache.evictions == 1
    assert cache.bytes == 3 * first.size_bytes
    huge = cache.put("p", "big", "q", answer("y" * 100_000), unit(4))
    assert [e.exact for e in cache.entries()] == ["big"] and cache.bytes == huge.size_bytes
    cache.invalidate()
    assert cache.bytes == 0


def test_the_byte_estimate_matches_what_entries_take() -> None:
    import tracemalloc

    count, estimated = 5000, 0
    tracemalloc.start()
    try:
        cache = TenantCache(DIM, count)
        for i in range(count):
            usage = {"prompt_tokens": 20 + i % 7, "completion_tokens": 70, "total_tokens": 90}
            reply = Answer("chat", "m", f"answer {i} " + "word " * 60, "stop", usage)
            entry = cache.put("p", f"{i:064x}", f"Question {i}: how do I fix it?", reply, None)
            estimated += entry.size_bytes
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.7 < estimated / traced < 1.3, (estimated, traced)

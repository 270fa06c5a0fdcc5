from __future__ import annotations

import numpy as np
import pytest

from cache_proxy.store import Answer, CacheStore, TenantCache

DIM = 8


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def answer(text: str, model: str = "m") -> Answer:
    return Answer("chat", model, text, "stop")


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_finds_own_vector_first(kind: str) -> None:
    cache = TenantCache(DIM, 100, kind)  # type: ignore[arg-type]
    for i in range(20):
        cache.put("p", f"e{i}", f"q{i}", answer(str(i)), unit(i))
    hits = cache.search("p", unit(7), 3)
    assert hits[0].entry.query_text == "q7" and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert cache.search("other-partition", unit(7), 3) == []


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_lru_eviction_removes_the_vector_too(kind: str) -> None:
    cache = TenantCache(DIM, 3, kind)  # type: ignore[arg-type]
    for i in range(3):
        cache.put("p", f"e{i}", f"q{i}", answer(str(i)), unit(i))
    assert cache.get_exact("e0") is not None  # e0 becomes most recent; e1 is now oldest
    cache.put("p", "e3", "q3", answer("3"), unit(3))
    assert cache.get_exact("e1") is None and len(cache) == 3 and cache.evictions == 1
    assert all(h.entry.query_text != "q1" for h in cache.search("p", unit(1), 3))


def test_replacing_an_exact_key_keeps_one_entry() -> None:
    cache = TenantCache(DIM, 10)
    cache.put("p", "e", "q", answer("old"), unit(1))
    cache.put("p", "e", "q", answer("new"), unit(1))
    assert len(cache) == 1 and cache.get_exact("e").answer.content == "new"  # type: ignore[union-attr]
    assert len(cache.search("p", unit(1), 5)) == 1


def test_invalidate_by_model_bumps_generation() -> None:
    cache = TenantCache(DIM, 10)
    cache.put("p", "a", "qa", answer("x", model="m1"), unit(1))
    cache.put("p", "b", "qb", answer("y", model="m2"), None)
    assert cache.invalidate(model="m1") == 1 and cache.generation == 1
    assert cache.get_exact("b") is not None and cache.search("p", unit(1), 2) == []


def test_tenants_are_separate_stores() -> None:
    store = CacheStore(DIM, 10)
    store.tenant("acme").put("p", "e", "q", answer("acme's"), unit(1))
    assert store.tenant("globex").get_exact("e") is None
    assert store.tenant("globex").search("p", unit(1), 4) == []
    assert store.invalidate(tenant="globex") == 0 and len(store.tenant("acme")) == 1

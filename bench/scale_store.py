"""In-process part of bench.scale: insert cost at capacity and loop lag while the index
is rebuilt and while every insert evicts, on the store the proxy uses (CacheStore with its
index thread), loaded with synthetic entries through the bulk path a snapshot load takes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tqdm import tqdm

from bench.lag import LoopLagProbe, lag_summary
from bench.redis_bulk import synthetic_entries
from cache_proxy.config import IndexSettings
from cache_proxy.store.bulk_load import bulk_load
from cache_proxy.store.codec import StoredEntry
from cache_proxy.store.embedded import apply_stored
from cache_proxy.store.tenant_cache import CacheStore, TenantCache

DIMENSION = 384


@dataclass(frozen=True)
class StoreResult:
    size: int
    kind: str
    rebuild_s: float
    rebuild_lag_ms: tuple[float, float]  # p99, max
    insert_loop_us: float  # per insert, on the event loop
    insert_applied_us: float  # per insert, until the index thread has applied it
    insert_lag_ms: tuple[float, float]


async def measure_store(size: int, inserts: int, settings: IndexSettings) -> StoreResult:
    store = CacheStore(DIMENSION, size, settings)
    cache = store.new_tenant_cache()
    entries = synthetic_entries(size + inserts, DIMENSION, seed=size)
    with bulk_load():  # as the proxy loads a snapshot or a mirror
        for entry in tqdm(_take(entries, size), total=size, desc=f"load {size:,}", mininterval=5):
            apply_stored(cache, entry)
    fresh = list(_take(entries, inserts))  # made before the clock starts
    probe = LoopLagProbe()
    probe.start()
    try:
        rebuild_s = await _publish(store, cache)
        rebuild_lag = lag_summary(probe.take())
        loop_s, applied_s = await _insert_at_capacity(cache, fresh)
        insert_lag = lag_summary(probe.take())
    finally:
        await probe.stop()
        store.close()
    kind = "ivf" if cache.index_stats()["ivf"] else "flat"
    return StoreResult(
        size,
        kind,
        rebuild_s,
        rebuild_lag,
        1e6 * loop_s / inserts,
        1e6 * applied_s / inserts,
        insert_lag,
    )


async def _publish(store: CacheStore, cache: TenantCache) -> float:
    """Swaps the loaded cache in; returns how long the rebuild it starts (if any) took."""
    started = time.perf_counter()
    store.replace_tenant("bench", cache)
    await _drained(cache)  # the adopt step has run: a due rebuild has begun
    while cache.index_stats()["rebuilding"]:
        await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def _insert_at_capacity(
    cache: TenantCache, entries: list[StoredEntry]
) -> tuple[float, float]:
    """Every insert evicts the least recently used entry. Returns (loop s, applied s)."""
    loop_s, started = 0.0, time.perf_counter()
    for first in range(0, len(entries), 100):
        loop_s += _put_all(cache, entries[first : first + 100])
        await asyncio.sleep(0)  # lets the probe (and, in the proxy, requests) run
    await _drained(cache)
    return loop_s, time.perf_counter() - started


def _put_all(cache: TenantCache, batch: list[StoredEntry]) -> float:
    started = time.perf_counter()
    for entry in batch:
        apply_stored(cache, entry)
    return time.perf_counter() - started


async def _drained(cache: TenantCache) -> None:
    """Returns once the index thread has run everything enqueued before this call."""
    probe = next(iter(cache.entries()))
    vectors = await cache.vectors([probe])
    if probe.entry_id in vectors:
        await cache.search(probe.partition, vectors[probe.entry_id], 1)


def _take(entries: Iterator[StoredEntry], count: int) -> Iterator[StoredEntry]:
    for _ in range(count):
        yield next(entries)

"""bench/shared_cache.py: its bulk load writes what RedisBackend.put writes, a fresh replica
rebuilds from it, and the whole benchmark runs end to end at a tiny size."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bench import shared_cache
from bench.redis_bulk import bulk_put, synthetic_entries
from cache_proxy.config import CacheSettings, RedisSettings
from cache_proxy.metrics import Metrics
from cache_proxy.store import CacheSpace
from cache_proxy.store.redis_backend import RedisBackend
from tests.support.redis_server import RedisServer

DIM = 16
SPACE = CacheSpace("bench-smoke", DIM)


def backend(url: str, prefix: str, tenants: list[str]) -> RedisBackend:
    settings = CacheSettings(
        backend="redis", max_entries=100, redis=RedisSettings(url=url, key_prefix=prefix)
    )
    made = RedisBackend(settings, SPACE, Metrics())
    made.set_tenants(tenants)
    return made


async def test_the_bulk_load_writes_what_the_backend_writes_and_rebuilds(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    entries = list(synthetic_entries(5, DIM))
    writer = backend(redis_server.url, redis_prefix, ["via-put"])
    await writer.start()
    try:
        deadline = time.monotonic() + 10
        while writer.follower.rebuilding:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        for stored in entries:
            assert await writer.put("via-put", stored, writer.generation("via-put"))
    finally:
        await writer.aclose()
    client = redis_server.client()
    bulk_keys = writer.keys("via-bulk")
    assert sum(bulk_put(client, bulk_keys, entries, 100, 100_000, batch=2)) == 5

    put_keys = writer.keys("via-put")
    for stored in entries:
        assert client.hgetall(bulk_keys.entry(stored.exact)) == client.hgetall(
            put_keys.entry(stored.exact)
        )
    # Same members; the scores are the time of each put (ties order by member).
    assert sorted(client.zrange(bulk_keys.lru, 0, -1)) == sorted(client.zrange(put_keys.lru, 0, -1))
    assert client.smembers(bulk_keys.spaces) == client.smembers(put_keys.spaces)
    assert client.exists(bulk_keys.expiries, put_keys.expiries) == 0
    events: Any = [client.xrange(keys.log) for keys in (bulk_keys, put_keys)]
    assert [fields for _, fields in events[0]] == [fields for _, fields in events[1]]

    replica = backend(redis_server.url, redis_prefix, ["via-bulk"])
    assert await replica.follower.rebuild("via-bulk") == 5
    probe = entries[3]
    assert probe.vector is not None
    hits = await replica.tenant("via-bulk").search(probe.partition, probe.vector, 1)
    assert hits[0].entry.answer == probe.answer
    await replica.start()
    await replica.aclose()


def test_synthetic_entries_are_shaped_like_real_ones() -> None:
    entries = list(synthetic_entries(50, 384))
    assert len({e.exact for e in entries}) == 50
    assert all(len(e.exact) == 64 and len(e.partition) == 64 for e in entries)
    assert 60 <= sum(len(e.query_text) for e in entries) / 50 <= 100
    assert all(250 <= len(e.answer.content.encode()) <= 310 for e in entries)
    assert all(abs(float((e.vector**2).sum()) - 1) < 1e-4 for e in entries if e.vector is not None)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    shared_cache.main(["--queries", "5", "--rebuild-entries", "300"])
    out = capsys.readouterr().out
    for row in ("replication A -> B", "exact: redis / embedded", "semantic: redis / embedded"):
        assert row in out
    assert "mirror rebuild (300 entries)" in out
    assert "Redis memory / entry" in out and "mirror memory / entry" in out

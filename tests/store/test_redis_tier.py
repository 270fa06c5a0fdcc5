"""The connection to a real redis-server through its failures: every call bounded by the
deadline, and after one no reply ever lands on another call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache_proxy.config import RedisSettings
from cache_proxy.metrics import Metrics
from cache_proxy.store.backend import SharedUnavailable
from cache_proxy.store.redis_tier import RedisTier
from tests.support.redis_server import RedisServer

TIMEOUT_S = 0.3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path / "redis").start()
    try:
        yield running
    finally:
        running.resume()  # a test that failed while it was paused must not leave it stopped
        running.stop()


async def read(tier: RedisTier, key: str) -> bytes | str | None:
    try:
        return await tier.call("read", lambda r: r.get(key), probe=True)
    except SharedUnavailable:
        return None


async def write(tier: RedisTier, key: str, value: str) -> None:
    await tier.call("write", lambda r: r.set(key, value))


async def test_a_hung_redis_times_out_and_afterwards_every_reply_is_its_own(
    server: RedisServer,
) -> None:
    """Calls cut by the deadline leave their replies in flight; when Redis answers again those
    replies must not be read as the answers of later calls (the wrong entry's body)."""
    tier = RedisTier(RedisSettings(url=server.url, timeout_s=TIMEOUT_S), Metrics())
    try:
        for i in range(24):
            await write(tier, f"k{i}", f"v{i}")
        await asyncio.gather(*(read(tier, f"k{i}") for i in range(8)))  # 8 pooled connections
        server.pause()
        started = time.monotonic()
        assert await asyncio.gather(*(read(tier, f"k{i}") for i in range(8))) == [None] * 8
        assert time.monotonic() - started < 3 * TIMEOUT_S  # concurrent, each within its deadline
        assert tier.state == "degraded"
        server.resume()
        for _ in range(3):
            replies = await asyncio.gather(*(read(tier, f"k{i}") for i in range(8, 24)))
            assert replies == [f"v{i}".encode() for i in range(8, 24)]
        assert tier.state == "ok"
    finally:
        await tier.aclose()

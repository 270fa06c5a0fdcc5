"""The connection to Redis: a deadline on every call, and a breaker while it is down.

Every failure (refused, reset, timed out, an error reply) becomes SharedUnavailable and is
counted; the caller degrades (a miss, a local-only change). While Redis is down, calls on the
request path fail at once instead of each waiting for the timeout; the follower keeps probing
and the first call that succeeds closes the breaker again. Idle pooled connections are
closed when the tier goes down and when it comes back: after a restart they are dead,
and would each cost one command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cache_proxy.config import RedisSettings
from cache_proxy.metrics import Metrics
from cache_proxy.store.backend import SharedUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
BLOCK_MS = 1000  # the follower's blocking read of the change log
RETRY_AFTER_S = 1.0  # while down: request-path calls fail at once for this long


class RedisTier:
    def __init__(self, settings: RedisSettings, metrics: Metrics) -> None:
        url = settings.resolved_url()
        if not url:
            raise ValueError("cache.redis.url_env: the variable is not set or empty")
        self.timeout_s = settings.timeout_s
        self.client = _client(url, settings.timeout_s)
        self.blocking = _client(url, settings.timeout_s + BLOCK_MS / 1000)
        self._metrics = metrics
        self.state = "connecting"
        self.closing = False  # shutting down: the connections closing are no outage
        self.last_error: str | None = None
        self._failed_at = 0.0

    @property
    def available(self) -> bool:
        return self.state == "ok" or time.monotonic() - self._failed_at >= RETRY_AFTER_S

    async def call(
        self,
        operation: str,
        make: Callable[[Redis], Awaitable[T]],
        timeout_s: float | None = None,
        probe: bool = False,
    ) -> T:
        """`make(client)` within the deadline; SharedUnavailable on any failure."""
        if not probe and not self.available:
            raise SharedUnavailable(operation)
        return await self._timed(operation, make(self.client), timeout_s or self.timeout_s)

    async def read_log(self, streams: dict[str, str], count: int) -> Any:
        """XREAD BLOCK on the follower's own connection (its socket waits past BLOCK_MS)."""
        reply = self.blocking.xread(streams, count=count, block=BLOCK_MS)  # type: ignore[arg-type]
        return await self._timed("follow", reply, self.timeout_s + BLOCK_MS / 1000)

    async def _timed(self, operation: str, pending: Awaitable[T], timeout_s: float) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                result = await pending
        except (RedisError, OSError, TimeoutError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # redis-py turns a cancel into an error
                raise asyncio.CancelledError from exc
            if self._failed(operation, exc):  # the tier just went down
                await self._drop_idle_connections()
            raise SharedUnavailable(operation) from exc
        if self._succeeded():  # the tier just came back
            await self._drop_idle_connections()
        return result

    async def _drop_idle_connections(self) -> None:
        """Connections pooled before an outage are dead after it (Redis restarted, failed
        over), yet the pool hands them out as live: each would fail its next command, a
        store lost. When the tier goes down and when it comes back the idle ones are closed,
        so the next calls connect afresh; connections in use finish or fail on their own.
        (Only at those two moments: a reconnect storm on every timeout would cost more.)"""
        if self.closing:
            return
        for client in (self.client, self.blocking):  # each close is bounded by the timeout
            with contextlib.suppress(RedisError, OSError):
                await client.connection_pool.disconnect(inuse_connections=False)

    def _failed(self, operation: str, exc: BaseException) -> bool:
        """Counts the failure; True when it turned the tier from up to degraded."""
        if self.closing:
            return False
        self._metrics.shared_tier_errors.labels(operation).inc()
        self._metrics.shared_tier_up.set(0)
        self._failed_at = time.monotonic()
        self.last_error = f"{operation}: {type(exc).__name__}"  # never the URL (password)
        went_down = self.state != "degraded"
        if went_down:
            logger.warning("shared tier (Redis) degraded: %s", self.last_error)
        self.state = "degraded"
        return went_down

    def _succeeded(self) -> bool:
        """True when this success ended an outage."""
        came_back = self.state == "degraded"
        if self.state != "ok":
            logger.info("shared tier (Redis) is up")
        self.state = "ok"
        self._metrics.shared_tier_up.set(1)
        return came_back

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.blocking.aclose()


def _client(url: str, timeout_s: float) -> Redis:
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # one try: the deadline is the caller's, not redis-py's
    )

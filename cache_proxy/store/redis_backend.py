"""The shared backend: Redis holds every entry and a change log; each replica searches a
local FAISS mirror that its follower keeps current (store/follower.py).

Redis is touched on a store (one script), by the follower, by batched LRU updates, and by
cross-replica single flight (a lease per in-flight miss). When Redis is down the replica keeps
answering: hits from its mirror (expiry still checked), misses from the engine, nothing
stored; /readyz says `degraded`, and once Redis is back the follower resumes its log (or
rebuilds the mirror when the log lost its place).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from cache_proxy.config import CacheSettings
from cache_proxy.metrics import Metrics
from cache_proxy.store import redis_scripts
from cache_proxy.store.backend import (
    ONLINE_VERDICTS_KEPT,
    Lease,
    NoLease,
    OnlineVerdict,
    SharedUnavailable,
    Verdict,
)
from cache_proxy.store.codec import StoredEntry
from cache_proxy.store.entry import Entry
from cache_proxy.store.follower import ChangeLogFollower
from cache_proxy.store.identity import CacheSpace
from cache_proxy.store.redis_keys import TenantKeys
from cache_proxy.store.redis_tier import RedisTier
from cache_proxy.store.tenant_cache import CacheStore, TenantCache

logger = logging.getLogger(__name__)
TOUCH_FLUSH_S = 1.0  # hits reach Redis's LRU order in batches, off the hit path
ONLINE_READ_BATCH = 1000
LEASE_CHECK_S = 0.1  # how often a waiting replica checks that the leader is still alive
SWEEP_LIMIT = 1000


class RedisBackend:
    kind = "redis"

    def __init__(self, settings: CacheSettings, space: CacheSpace, metrics: Metrics) -> None:
        self.mirror = CacheStore(
            space.dimension, settings.max_entries, settings.index_settings(), settings.max_bytes
        )
        self._settings = settings
        self._redis = settings.redis
        self._space = space
        self._metrics = metrics
        self.replica_id = uuid.uuid4().hex
        self._tier = RedisTier(settings.redis, metrics)
        self.follower = ChangeLogFollower(
            self._tier, self.mirror, self.keys, space.dimension, metrics
        )
        self._scripts = {
            name: self._tier.client.register_script(getattr(redis_scripts, name))
            for name in ("PUT", "REMOVE", "INVALIDATE", "SWEEP", "RELEASE", "RENEW")
        }
        self._touched: defaultdict[str, set[str]] = defaultdict(set)
        self._tasks: list[asyncio.Task[None]] = []

    def keys(self, tenant: str) -> TenantKeys:
        return TenantKeys(self._redis.key_prefix, tenant, self._space.space_id)

    # ---- reads -------------------------------------------------------------------------
    def tenant(self, name: str) -> TenantCache:
        return self.mirror.tenant(name)

    def tenant_names(self) -> list[str]:
        return self.mirror.tenant_names()

    def generation(self, tenant: str) -> int:
        return self.follower.epoch(tenant)

    def set_tenants(self, names: Sequence[str]) -> None:
        self.follower.set_tenants(names)

    def record_use(self, tenant: str, entry: Entry) -> None:
        self._touched[tenant].add(entry.exact)

    # ---- writes ------------------------------------------------------------------------
    async def put(self, tenant: str, entry: StoredEntry, generation: int) -> bool:
        limits = (self._settings.max_entries, self._redis.log_max_len)
        script_keys, args = redis_scripts.put_call(self.keys(tenant), entry, *limits, generation)
        try:
            done, last_id = await self._run("put", "PUT", script_keys, args)
        except SharedUnavailable:
            return False
        if not done:
            return False  # an invalidation came first: this answer may be stale
        # Our own event, applied by the follower like everyone's: the mirror keeps Redis order.
        await self.follower.wait_reached(tenant, last_id.decode(), self._redis.timeout_s)
        return True

    async def invalidate(self, tenant: str | None = None, model: str | None = None) -> int:
        names = [tenant] if tenant is not None else self.follower.tenants
        removed, unreachable = 0, False
        for name in names:
            keys = self.keys(name)
            args = [keys.base, model or "", self._redis.log_max_len]
            try:
                count, event_id, _ = await self._run(
                    "invalidate", "INVALIDATE", [keys.spaces, keys.epoch, keys.log], args
                )
            except SharedUnavailable:
                unreachable = True
                removed += self.mirror.invalidate(tenant=name, model=model)
                continue
            removed += int(count)
            await self.follower.wait_reached(name, event_id.decode(), self._redis.timeout_s)
        if unreachable:
            raise SharedUnavailable("invalidate")
        return removed

    async def remove_entry(self, tenant: str, exact: str) -> int:
        keys = self.keys(tenant)
        script_keys = [keys.entry(exact), keys.lru, keys.expiries, keys.log]
        try:
            removed, event_id = await self._run(
                "remove", "REMOVE", script_keys, [exact, keys.space, self._redis.log_max_len]
            )
        except SharedUnavailable:
            self.mirror.tenant(tenant).remove_exact(exact)
            raise
        if event_id:
            await self.follower.wait_reached(tenant, event_id.decode(), self._redis.timeout_s)
        return int(removed)

    # ---- cross-replica single flight -------------------------------------------------------
    async def lead(self, tenant: str, exact: str) -> Lease | None:
        key, lease_ms = self.keys(tenant).lease(exact), int(self._redis.lease_s * 1000)
        try:
            taken = await self._tier.call(
                "lease", lambda r: r.set(key, self.replica_id, nx=True, px=lease_ms)
            )
        except SharedUnavailable:
            return NoLease()  # no shared tier: this replica calls the engine itself
        if not taken:
            return None
        return RedisLease(self, key, lease_ms)

    async def await_remote(self, tenant: str, exact: str) -> Entry | None:
        """Waits for the leader's answer to reach the mirror; a direct read once it let go."""
        cache, lease_key = self.mirror.tenant(tenant), self.keys(tenant).lease(exact)
        deadline = time.monotonic() + self._redis.coalesce_wait_s
        next_check = time.monotonic() + LEASE_CHECK_S
        while time.monotonic() < deadline:
            entry = cache.peek_exact(exact)
            if entry is not None:
                return entry
            await self.follower.changed.wait(max(0.0, next_check - time.monotonic()))
            if time.monotonic() < next_check:
                continue  # woken by another change: the lease is checked at most every 0.1 s
            next_check = time.monotonic() + LEASE_CHECK_S
            try:
                held = await self._tier.call("lease", lambda r: r.exists(lease_key))
                if not held:  # stored (maybe not followed yet) or given up
                    return cache.peek_exact(exact) or await self._read_entry(tenant, exact)
            except SharedUnavailable:
                return None
        return None

    async def _read_entry(self, tenant: str, exact: str) -> Entry | None:
        key = self.keys(tenant).entry(exact)
        body: Any = await self._tier.call("read", lambda r: r.hgetall(key))
        if not body:
            return None
        try:
            found = StoredEntry.from_fields(body, self._space.dimension)
        except (ValueError, KeyError, TypeError):
            return None
        if found.expires_at is not None and found.expires_at <= time.time():
            return None
        return Entry(
            -1,  # not in the mirror (the follower adds it): no index id
            found.partition,
            found.exact,
            found.query_text,
            found.answer,
            found.vector,
            found.created_at,
            found.expires_at,
        )

    # ---- shared shadow verdicts ------------------------------------------------------------
    def verdict_log(self) -> RedisBackend:
        return self

    async def add_verdict(self, tenant: str, verdict: Verdict, keep: int) -> None:
        key, value = self.keys(tenant).shadow, f"{verdict[0]:.6f}:{int(verdict[1])}"

        async def push(client: Any) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.lpush(key, value)
            pipe.ltrim(key, 0, keep - 1)
            await pipe.execute()

        with contextlib.suppress(SharedUnavailable):
            await self._tier.call("shadow", push)

    async def recent_verdicts(self, tenant: str, keep: int) -> list[Verdict] | None:
        key = self.keys(tenant).shadow
        try:
            raw: Any = await self._tier.call("shadow", lambda r: r.lrange(key, 0, keep - 1))
        except SharedUnavailable:
            return None
        verdicts = []
        for item in raw:
            similarity, _, suspect = item.decode().partition(":")
            verdicts.append((float(similarity), suspect == "1"))
        return verdicts

    # ---- shared online verdicts ------------------------------------------------------------
    def exploration_log(self) -> RedisBackend:
        return self

    async def add_online_verdict(self, tenant: str, verdict: OnlineVerdict) -> None:
        fields: dict[Any, Any] = {  # redis-py's own type for stream fields is invariant
            "s": f"{verdict.similarity:.6f}",
            "m": f"{verdict.margin:.6f}",
            "ok": int(verdict.correct),
            "e": verdict.entry,
            "r": self.replica_id,
        }
        key = self.keys(tenant).online
        with contextlib.suppress(SharedUnavailable):
            await self._tier.call(
                "online",
                lambda r: r.xadd(key, fields, maxlen=ONLINE_VERDICTS_KEPT, approximate=True),
            )

    async def online_verdicts_after(
        self, tenant: str, position: str
    ) -> tuple[list[OnlineVerdict], str] | None:
        key, start = self.keys(tenant).online, f"({position}" if position else "-"
        try:
            raw: Any = await self._tier.call(
                "online", lambda r: r.xrange(key, start, "+", count=ONLINE_READ_BATCH)
            )
        except SharedUnavailable:
            return None
        verdicts = []
        for event_id, fields in raw:
            position = event_id.decode()
            if fields.get(b"r", b"").decode() == self.replica_id:
                continue  # this replica counted it when it judged
            with contextlib.suppress(KeyError, ValueError):  # one bad event, not the batch
                verdicts.append(_online_verdict(fields))
        return verdicts, position

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        for job in (self.follower.run, self._flush_touches_forever, self._sweep_forever):
            self._tasks.append(asyncio.create_task(job()))
        self._tasks.append(asyncio.create_task(self._describe_space()))

    async def _describe_space(self) -> None:
        """Says, once, which embedder and engine build a space id stands for (for operators;
        the id alone decides what is served)."""
        key = f"{self._redis.key_prefix}space:{self._space.space_id}"
        text = json.dumps(self._space.describe(), sort_keys=True)
        with contextlib.suppress(SharedUnavailable):
            await self._tier.call("describe", lambda r: r.set(key, text))

    async def aclose(self) -> None:
        # A blocked XREAD is ended by closing its connection, not by cancelling it: a cancel
        # inside redis-py's read was seen to be lost, leaving shutdown waiting forever.
        self.follower.stop()
        self._tier.closing = True
        await self._tier.blocking.connection_pool.disconnect()
        for task in self._tasks[1:]:
            task.cancel()
        pending: set[asyncio.Task[None]] = set()
        if self._tasks:  # (none when start() never ran)
            _, pending = await asyncio.wait(self._tasks, timeout=self._redis.timeout_s + 2)
        for task in pending:
            task.cancel()
            logger.warning("shared-tier task did not stop in time: %s", task.get_name())
        with contextlib.suppress(SharedUnavailable):
            await self._flush_touches()
        await self._tier.aclose()
        self.mirror.close()

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "backend": self.kind,
            "state": self._tier.state,
            "space": self._space.space_id,
        }
        if self.follower.rebuilding:
            report["rebuilding"] = self.follower.rebuilding
        if self._tier.state != "ok" and self._tier.last_error:
            report["last_error"] = self._tier.last_error
        return report

    # ---- background ----------------------------------------------------------------------
    async def _flush_touches_forever(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_FLUSH_S)
            with contextlib.suppress(SharedUnavailable):
                await self._flush_touches()

    async def _flush_touches(self) -> None:
        touched, self._touched = self._touched, defaultdict(set)
        now_ms = int(time.time() * 1000)
        for tenant, exacts in touched.items():
            await self._touch(self.keys(tenant).lru, dict.fromkeys(exacts, now_ms))

    async def _touch(self, lru: str, scores: dict[str, int]) -> None:
        await self._tier.call("touch", lambda r: r.zadd(lru, scores, xx=True))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            self.mirror.sweep(time.time())
            for tenant in self.follower.tenants:
                keys, now_ms = self.keys(tenant), int(time.time() * 1000)
                with contextlib.suppress(SharedUnavailable):
                    await self._run(
                        "sweep", "SWEEP", [keys.spaces], [keys.base, now_ms, SWEEP_LIMIT]
                    )

    async def _run(self, operation: str, script: str, keys: list[str], args: list[Any]) -> Any:
        runner = self._scripts[script]
        return await self._tier.call(operation, lambda r: runner(keys=keys, args=args, client=r))


class RedisLease:
    """Held while this replica's engine call runs; renewed so a long answer keeps it."""

    def __init__(self, backend: RedisBackend, key: str, lease_ms: int) -> None:
        self._backend, self._key, self._lease_ms = backend, key, lease_ms
        self._renewal = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        holder = self._backend.replica_id
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            with contextlib.suppress(SharedUnavailable):
                await self._backend._run("lease", "RENEW", [self._key], [holder, self._lease_ms])

    async def release(self) -> None:
        self._renewal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewal
        with contextlib.suppress(SharedUnavailable):
            await self._backend._run("lease", "RELEASE", [self._key], [self._backend.replica_id])


def _online_verdict(fields: dict[bytes, bytes]) -> OnlineVerdict:
    return OnlineVerdict(
        similarity=float(fields[b"s"]),
        correct=fields[b"ok"] == b"1",
        entry=fields[b"e"].decode(),
        margin=float(fields.get(b"m", b"1.0")),
    )

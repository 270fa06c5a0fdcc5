"""The change-log follower: the one writer of a replica's local mirror in Redis mode.

Per tenant it rebuilds the mirror from Redis (at start, for a new tenant, after an outage
that broke the log's continuity), then applies the tenant's change log in order: `put`
(fetch the entry body), `del`, `inv`. After an outage the log is resumed instead when the last
event applied is still in it: the log is only ever trimmed from its oldest end, so every later
event is there too. A Redis that came back empty, or from an older copy, or a log trimmed past
that event, is rebuilt from. (Resuming matters at scale: a one-second blip would otherwise
have every replica read every entry of every tenant again, at once.)
Applying every change through the log, the replica's own included, keeps the mirror in the
order Redis saw the changes; a writer waits until its own event is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cache_proxy.metrics import Metrics
from cache_proxy.store.backend import SharedUnavailable
from cache_proxy.store.bulk_load import bulk_load
from cache_proxy.store.codec import StoredEntry
from cache_proxy.store.embedded import apply_stored
from cache_proxy.store.redis_keys import TenantKeys, stream_position
from cache_proxy.store.redis_tier import RedisTier
from cache_proxy.store.tenant_cache import CacheStore, TenantCache

logger = logging.getLogger(__name__)
READ_COUNT = 512  # change-log events per read
FETCH_BATCH = 1000  # entry bodies per round trip while rebuilding
SCAN_PAGE = 2000  # entry keys per ZSCAN reply
_RETRY_S = (0.2, 0.5, 1.0, 2.0)  # back-off while Redis is down
Event = tuple[bytes, dict[bytes, bytes]]


class Signal:
    """Wakes everyone waiting at the moment of `notify`."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._event.wait()


class ChangeLogFollower:
    def __init__(
        self,
        tier: RedisTier,
        mirror: CacheStore,
        keys_for: Callable[[str], TenantKeys],
        dimension: int,
        metrics: Metrics,
    ) -> None:
        self._tier = tier
        self._mirror = mirror
        self._keys_for = keys_for
        self._dimension = dimension
        self._metrics = metrics
        self._positions: dict[str, str] = {}  # tenant -> id of the last applied event
        self._epochs: dict[str, int] = {}
        self._tenants: list[str] = []
        self._stale: set[str] = set()  # tenants whose mirror must be rebuilt first
        self._suspect: set[str] = set()  # after an outage: resumed if the log is continuous
        self._stopped = False
        self.changed = Signal()

    # ---- what the backend asks -------------------------------------------------------
    def set_tenants(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in self._tenants:
                self._stale.add(name)
        for name in self._tenants:
            if name not in names:
                self._positions.pop(name, None)
                self._stale.discard(name)
                self._suspect.discard(name)
                self._mirror.drop_tenant(name)
        self._tenants = list(names)

    @property
    def tenants(self) -> list[str]:
        return list(self._tenants)

    @property
    def rebuilding(self) -> list[str]:
        """Tenants whose mirror is not known current: being rebuilt, or checked after an outage."""
        return sorted(self._stale | self._suspect)

    def epoch(self, tenant: str) -> int:
        """The tenant's invalidation epoch as of the last applied event (-1: not yet known)."""
        if tenant in self._stale or tenant in self._suspect:
            return -1
        return self._epochs.get(tenant, -1)

    def reached(self, tenant: str, event_id: str) -> bool:
        position = self._positions.get(tenant)
        return position is not None and stream_position(position) >= stream_position(event_id)

    async def wait_reached(self, tenant: str, event_id: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.reached(tenant, event_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await self.changed.wait(remaining)
        return True

    def mark_all_suspect(self) -> None:
        """After an outage: each mirror is checked (`resume_or_rebuild`) before it is followed."""
        self._suspect.update(t for t in self._tenants if t not in self._stale)

    # ---- the task ----------------------------------------------------------------------
    def stop(self) -> None:
        """Ends `run` after the read in progress (closing the connection ends that read)."""
        self._stopped = True
        self.changed.notify()

    async def run(self) -> None:
        failures = 0
        while not self._stopped:
            try:
                for tenant in sorted(self._suspect):
                    await self.resume_or_rebuild(tenant)
                for tenant in sorted(self._stale):
                    await self.rebuild(tenant)
                await self._read_once()
                failures = 0
            except SharedUnavailable:
                if self._stopped:
                    return
                self.mark_all_suspect()  # what happened meanwhile is read from Redis
                await asyncio.sleep(_RETRY_S[min(failures, len(_RETRY_S) - 1)])
                failures += 1

    async def resume_or_rebuild(self, tenant: str) -> bool:
        """True when the log still holds the last event applied: following resumes there."""
        position, log = self._positions.get(tenant, "0-0"), self._keys_for(tenant).log
        continuous = False
        if position != "0-0":  # no event applied yet: nothing to prove continuity with
            found = await self._tier.call(
                "resume", lambda r: r.xrange(log, position, position, count=1), probe=True
            )
            continuous = bool(found)
        self._suspect.discard(tenant)
        if tenant not in self._tenants:
            return False  # dropped by a reload meanwhile: nothing to follow or rebuild
        if continuous:
            self._metrics.mirror_resumes.labels(tenant).inc()
            logger.info("mirror of tenant %s resumed at its change-log position", tenant)
        else:
            self._stale.add(tenant)  # gone: Redis lost it, or the log was trimmed past it
        self.changed.notify()
        return continuous

    async def rebuild(self, tenant: str) -> int:
        """Loads the tenant's entries into a new cache aside, then swaps it in."""
        started, keys = time.perf_counter(), self._keys_for(tenant)
        position, epoch = await self._tier.call("rebuild", lambda r: _position(r, keys), probe=True)
        members = await self._members(keys)
        bodies: list[dict[bytes, bytes]] = []
        for first in range(0, len(members), FETCH_BATCH):
            batch = [m.decode() for m in members[first : first + FETCH_BATCH]]
            bodies += await self._tier.call("rebuild", _fetcher(keys, batch), 30, probe=True)
            if len(bodies) % (20 * FETCH_BATCH) == 0:
                logger.info("mirror of %s: %d/%d entries read", tenant, len(bodies), len(members))
        cache = await asyncio.to_thread(self._build, bodies)
        if tenant not in self._tenants:
            return 0  # dropped by a reload meanwhile
        self._mirror.replace_tenant(tenant, cache)
        self._positions[tenant], self._epochs[tenant] = position, epoch
        self._stale.discard(tenant)
        self._metrics.mirror_rebuilds.labels(tenant).inc()
        self.changed.notify()
        logger.info(
            "mirror of tenant %s rebuilt from Redis: %d entries in %.2f s",
            tenant,
            len(cache),
            time.perf_counter() - started,
        )
        return len(cache)

    async def _members(self, keys: TenantKeys) -> list[bytes]:
        """Every entry key, least recently used first. ZSCAN in pages: each reply stays small
        (one reply of 300k members outlasts a 0.5 s socket timeout), and every member present
        for the whole scan is returned; what changes meanwhile the log replays after."""
        cursor, scored = 0, dict[bytes, float]()
        while True:
            cursor, page = await self._tier.call(
                "rebuild", _scanner(keys.lru, cursor), timeout_s=30, probe=True
            )
            scored.update(page)
            if cursor == 0:
                return sorted(scored, key=scored.__getitem__)

    def _build(self, bodies: list[dict[bytes, bytes]]) -> TenantCache:
        """A worker thread's job: decode every body and index it (least recently used first).
        It empties `bodies` as it goes: the loop holds that list, and freeing a million
        bodies there at once would stall it (each is freed here, right after its use)."""
        cache, now = self._mirror.new_tenant_cache(), time.time()
        bodies.reverse()  # pop() from the end then yields them oldest first
        with bulk_load():
            while bodies:
                body = bodies.pop()
                entry = self._decode(body)
                if entry is not None and (entry.expires_at is None or entry.expires_at > now):
                    apply_stored(cache, entry)
        return cache

    async def _read_once(self) -> None:
        known = self._stale | self._suspect
        live = [t for t in self._tenants if t not in known and t in self._positions]
        if not live:
            await self.changed.wait(1.0)
            return
        streams = {self._keys_for(t).log: self._positions[t] for t in live}
        by_log = {self._keys_for(t).log: t for t in live}
        reply = await self._tier.read_log(streams, READ_COUNT)
        for log_key, events in reply or ():
            tenant = by_log.get(log_key.decode())
            if tenant is not None:
                await self._apply(tenant, events)
        self.changed.notify()

    async def _apply(self, tenant: str, events: list[Event]) -> None:
        keys = self._keys_for(tenant)
        wanted = sorted({f[b"exact"].decode() for _, f in events if self._is_put(keys, f)})
        fetched = await self._tier.call("follow", lambda r: _bodies(r, keys, wanted), probe=True)
        bodies = dict(zip(wanted, fetched, strict=True))
        cache, now = self._mirror.tenant(tenant), time.time()
        for event_id, fields in events:
            self._apply_event(tenant, keys, cache, fields, bodies)
            self._positions[tenant] = event_id.decode()
            self._metrics.replication_seconds.observe(
                max(0.0, now - stream_position(event_id)[0] / 1000)
            )

    def _apply_event(
        self,
        tenant: str,
        keys: TenantKeys,
        cache: TenantCache,
        fields: dict[bytes, bytes],
        bodies: dict[str, dict[bytes, bytes]],
    ) -> None:
        op = fields.get(b"op", b"").decode()
        if op == "inv":
            cache.invalidate(fields.get(b"model", b"").decode() or None)
            self._epochs[tenant] = int(fields[b"epoch"])
            return
        if fields.get(b"space", b"").decode() != keys.space:
            return  # another embedder or engine identity wrote it: not ours to serve
        exact = fields[b"exact"].decode()
        entry = self._decode(bodies.get(exact, {})) if op == "put" else None
        if entry is None:  # removed, or deleted again before we read it
            cache.remove_exact(exact)
        else:
            apply_stored(cache, entry)

    @staticmethod
    def _is_put(keys: TenantKeys, fields: dict[bytes, bytes]) -> bool:
        return fields.get(b"op") == b"put" and fields.get(b"space", b"").decode() == keys.space

    def _decode(self, body: dict[bytes, bytes]) -> StoredEntry | None:
        if not body:
            return None
        try:
            return StoredEntry.from_fields(body, self._dimension)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("unreadable cache entry skipped: %s", type(exc).__name__)
            return None


async def _position(client: Any, keys: TenantKeys) -> tuple[str, int]:
    """The log position and the epoch at one instant (MULTI/EXEC): the rebuild replays the
    log from there, so whatever changes while it reads the entries is applied after."""
    pipe = client.pipeline(transaction=True)
    pipe.xrevrange(keys.log, count=1)
    pipe.get(keys.epoch)
    last, epoch = await pipe.execute()
    position = last[0][0].decode() if last else "0-0"
    return position, int(epoch or 0)


def _scanner(
    key: str, cursor: int
) -> Callable[[Any], Awaitable[tuple[int, list[tuple[bytes, float]]]]]:
    return lambda client: client.zscan(key, cursor, count=SCAN_PAGE)


def _fetcher(
    keys: TenantKeys, exacts: list[str]
) -> Callable[[Any], Awaitable[list[dict[bytes, bytes]]]]:
    return lambda client: _bodies(client, keys, exacts)


async def _bodies(client: Any, keys: TenantKeys, exacts: list[str]) -> list[dict[bytes, bytes]]:
    if not exacts:
        return []
    pipe = client.pipeline(transaction=False)
    for exact in exacts:
        pipe.hgetall(keys.entry(exact))
    return list(await pipe.execute())

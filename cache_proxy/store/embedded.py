"""The default backend: entries in this process, optionally kept across restarts.

With `cache.snapshot_path` every tenant's entries and vectors are written to that file every
`snapshot_interval_s` and at shutdown (atomically, off the event loop), and loaded at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cache_proxy.config import CacheSettings
from cache_proxy.store.backend import ONLINE_VERDICTS_KEPT, Lease, NoLease, OnlineVerdict
from cache_proxy.store.bulk_load import bulk_load
from cache_proxy.store.codec import StoredEntry, Vector
from cache_proxy.store.entry import Entry
from cache_proxy.store.identity import CacheSpace
from cache_proxy.store.snapshot import Record, SnapshotError, iter_snapshot, write_snapshot
from cache_proxy.store.tenant_cache import CacheStore, TenantCache
from cache_proxy.store.verdict_file import read_verdicts, verdict_path, write_verdicts

logger = logging.getLogger(__name__)


def stored(entry: Entry, vector: Vector | None) -> StoredEntry:
    return StoredEntry(
        partition=entry.partition,
        exact=entry.exact,
        query_text=entry.query_text,
        answer=entry.answer,
        vector=vector,
        created_at=entry.created_at,
        expires_at=entry.expires_at,
    )


def _live_records(
    tenant: str, entries: list[Entry], vectors: dict[int, Vector], now: float
) -> list[Record]:
    return [(tenant, stored(e, vectors.get(e.entry_id))) for e in entries if not e.expired(now)]


def apply_stored(cache: TenantCache, entry: StoredEntry) -> Entry:
    return cache.put(
        entry.partition,
        entry.exact,
        entry.query_text,
        entry.answer,
        entry.vector,
        expires_at=entry.expires_at,
        created_at=entry.created_at,
    )


class EmbeddedBackend:
    kind = "embedded"

    def __init__(self, settings: CacheSettings, space: CacheSpace) -> None:
        self.mirror = CacheStore(
            space.dimension, settings.max_entries, settings.index_settings(), settings.max_bytes
        )
        self._settings = settings
        self._space = space
        self._snapshot = Path(settings.snapshot_path) if settings.snapshot_path else None
        self._tasks: list[asyncio.Task[None]] = []
        # A cancelled save's thread still runs: writes take turns, so the last one lands last.
        self._write_lock = threading.Lock()
        self._tenants: set[str] | None = None
        self.snapshot_error: str | None = None
        self._online: dict[str, deque[OnlineVerdict]] = {}  # kept with the snapshot
        self._restored: dict[str, list[OnlineVerdict]] = {}  # read back once by the explorer

    def tenant(self, name: str) -> TenantCache:
        return self.mirror.tenant(name)

    def tenant_names(self) -> list[str]:
        return self.mirror.tenant_names()

    def generation(self, tenant: str) -> int:
        return self.mirror.tenant(tenant).generation

    def set_tenants(self, names: Sequence[str]) -> None:
        self._tenants = set(names)
        for name in self.mirror.tenant_names():
            if name not in self._tenants:
                self.mirror.drop_tenant(name)

    async def put(self, tenant: str, entry: StoredEntry, generation: int) -> bool:
        cache = self.mirror.tenant(tenant)
        if cache.generation != generation:
            return False
        apply_stored(cache, entry)
        return True

    async def invalidate(self, tenant: str | None = None, model: str | None = None) -> int:
        return self.mirror.invalidate(tenant=tenant, model=model)

    async def remove_entry(self, tenant: str, exact: str) -> int:
        return int(self.mirror.tenant(tenant).remove_exact(exact))

    def record_use(self, tenant: str, entry: Entry) -> None:
        return None  # the mirror's own LRU order is the order

    async def lead(self, tenant: str, exact: str) -> Lease | None:
        return NoLease()

    async def await_remote(self, tenant: str, exact: str) -> Entry | None:
        return None

    def verdict_log(self) -> None:
        return None

    def exploration_log(self) -> EmbeddedBackend | None:
        """With a snapshot, online verdicts are kept beside it (one process: nobody else
        writes them, so the only ones to read are those of before a restart)."""
        return self if self._snapshot is not None else None

    async def add_online_verdict(self, tenant: str, verdict: OnlineVerdict) -> None:
        kept = self._online.setdefault(tenant, deque(maxlen=ONLINE_VERDICTS_KEPT))
        kept.append(verdict)

    async def online_verdicts_after(
        self, tenant: str, position: str
    ) -> tuple[list[OnlineVerdict], str]:
        if position:
            return [], position
        return self._restored.pop(tenant, []), "restored"

    async def start(self) -> None:
        if self._snapshot is not None:
            await self._load_snapshot(self._snapshot)
            await self._load_verdicts(verdict_path(self._snapshot))
            self._tasks.append(asyncio.create_task(self._every_snapshot_interval()))
        self._tasks.append(asyncio.create_task(self._sweep_forever()))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._snapshot is not None:
            await self.save_snapshot()
        self.mirror.close()

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": self.kind, "state": "ok"}
        if self._snapshot is not None:
            report["snapshot_path"] = str(self._snapshot)
        if self.snapshot_error:
            report["snapshot_error"] = self.snapshot_error
        return report

    async def save_snapshot(self) -> int:
        assert self._snapshot is not None
        records = await self._records()  # references only; serialising runs off the loop
        try:
            verdicts = {tenant: list(kept) for tenant, kept in self._online.items()}  # on the loop
            count = await asyncio.to_thread(self._write, self._snapshot, records, verdicts)
        except (OSError, ValueError) as exc:  # ValueError: text JSON cannot carry
            self.snapshot_error = f"{type(exc).__name__}: {exc}"
            logger.error("cache snapshot not written to %s: %s", self._snapshot, exc)
            return 0
        self.snapshot_error = None
        logger.info("cache snapshot: %d entries written to %s", count, self._snapshot)
        return count

    def _write(
        self, path: Path, records: list[Record], verdicts: dict[str, list[OnlineVerdict]]
    ) -> int:
        with self._write_lock:
            count = write_snapshot(path, self._space.space_id, records)
            if verdicts:  # none learned: no file (a proxy without verify.online has none)
                write_verdicts(verdict_path(path), self._space.space_id, verdicts)
            return count

    async def _load_verdicts(self, path: Path) -> None:
        if not path.exists():
            return
        try:
            found = await asyncio.to_thread(read_verdicts, path, self._space.space_id)
        except SnapshotError as exc:
            logger.warning("online verdicts at %s ignored: %s", path, exc)
            return
        for tenant, verdicts in found.items():
            if self._tenants is None or tenant in self._tenants:
                self._online[tenant] = deque(verdicts, maxlen=ONLINE_VERDICTS_KEPT)
                self._restored[tenant] = verdicts
        logger.info("online verdicts: %d loaded from %s", sum(map(len, found.values())), path)

    async def _records(self) -> list[Record]:
        """Every live entry with its vector; per-entry work runs off the loop (1M entries)."""
        now, records = time.time(), list[Record]()
        for name in self.mirror.tenant_names():
            cache = self.mirror.tenant(name)
            entries = cache.entries()  # a list copy at C speed; the rest runs in threads
            vectors = await cache.vectors(entries)
            records += await asyncio.to_thread(_live_records, name, entries, vectors, now)
        return records

    async def _load_snapshot(self, path: Path) -> None:
        if not path.exists():
            logger.info("cache snapshot: none at %s yet, starting empty", path)
            return
        space, dimension = self._space.space_id, self._space.dimension
        try:
            built = await asyncio.to_thread(self._read_and_build, path, space, dimension)
        except SnapshotError as exc:
            logger.warning("cache snapshot at %s ignored, starting empty: %s", path, exc)
            return
        for tenant, cache in built.items():  # swapped on the loop: readers see whole caches
            self.mirror.replace_tenant(tenant, cache)
        loaded = sum(len(c) for c in built.values())
        logger.info("cache snapshot: %d entries loaded from %s", loaded, path)

    def _read_and_build(self, path: Path, space: str, dimension: int) -> dict[str, TenantCache]:
        with bulk_load():
            return self._build(iter_snapshot(path, space, dimension))

    def _build(self, records: Iterable[Record]) -> dict[str, TenantCache]:
        """Each tenant's cache, built aside in a worker thread."""
        now, built = time.time(), dict[str, TenantCache]()
        for tenant, entry in records:
            if self._tenants is not None and tenant not in self._tenants:
                continue
            if entry.expires_at is None or entry.expires_at > now:
                cache = built.setdefault(tenant, self.mirror.new_tenant_cache())
                apply_stored(cache, entry)
        return built

    async def _every_snapshot_interval(self) -> None:
        while True:
            await asyncio.sleep(self._settings.snapshot_interval_s)
            await self.save_snapshot()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            self.mirror.sweep(time.time())

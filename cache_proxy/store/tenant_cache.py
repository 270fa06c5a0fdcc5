"""Per-tenant cache: LRU-bounded entries, an exact map and a vector index per partition.

Every lookup is scoped to one tenant's TenantCache: there is no shared index through which
one tenant's request could reach another tenant's entry. The maps (entries, exact keys, LRU
order, expiry heap) live on the event loop and cost O(1)/O(log n) per change; the vectors
live in per-partition indexes that only an IndexRunner touches (store/index_thread.py), so
no search, delete or rebuild runs on the loop. An entry keeps no copy of its vector: the
index holds the only one. With the Redis backend this is the local mirror of the tenant's
shared entries, written only by the change-log follower. Expired entries are never
returned, and `sweep` drops them in expiry order (a heap).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cache_proxy.config import IndexSettings
from cache_proxy.store.entry import Answer, Entry, entry_bytes
from cache_proxy.store.index_thread import IndexRunner, IndexThread, InlineRunner
from cache_proxy.store.partition_index import PartitionIndex
from cache_proxy.store.vector_index import Vectors

_EXPIRED_RETRIES = 3
_INDEX_ID_BYTES = 24  # the id beside the vector, and its slot in the id -> row table


@dataclass(frozen=True)
class SearchHit:
    entry: Entry
    similarity: float


class TenantCache:
    def __init__(
        self,
        dimension: int,
        max_entries: int,
        index: IndexSettings | None = None,
        runner: IndexRunner | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._dimension = dimension
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0  # estimated memory of its entries, vectors included (entry_bytes)
        self._index_settings = index or IndexSettings()
        self._runner: IndexRunner = runner or InlineRunner()
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._by_exact: dict[str, int] = {}
        self._partitions: dict[str, PartitionIndex] = {}
        self._partition_sizes: dict[str, int] = {}  # on the loop: the index's own is threaded
        self._ids = itertools.count(1)
        self._expiries: list[tuple[float, int]] = []  # heap of (expires_at, entry_id)
        self.evictions = 0
        # Bumped by invalidation: an answer fetched before it must not be stored after it.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_exact(self, exact: str) -> Entry | None:
        entry = self.peek_exact(exact)
        return self._touch(entry.entry_id) if entry is not None else None

    def peek_exact(self, exact: str) -> Entry | None:
        """The live entry under this key, without counting a use."""
        entry_id = self._by_exact.get(exact)
        if entry_id is None:
            return None
        entry = self._entries[entry_id]
        if entry.expired(time.time()):
            self._remove(entry_id)
            return None
        return entry

    def bind(self, runner: IndexThread) -> None:
        """From now on its indexes are touched by `runner` only (the cache is published);
        a partition loaded past the flat size gets its IVF index built aside now."""
        self._runner = runner
        for index in self._partitions.values():
            runner.adopt(index)

    async def search(
        self, partition: str, vector: npt.NDArray[np.float32], k: int
    ) -> list[SearchHit]:
        index = self._partitions.get(partition)
        if index is None:
            return []
        now = time.time()
        found: list[tuple[Entry, float]] = []
        for _ in range(_EXPIRED_RETRIES):
            pairs = await self._runner.search(index, vector, k)
            # an entry removed while the search ran is skipped (its removal was enqueued after)
            found = [(e, s) for i, s in pairs if (e := self._entries.get(i)) is not None]
            expired = [entry for entry, _ in found if entry.expired(now)]
            if not expired:
                break
            for entry in expired:  # they would take the slots of live matches: drop, search again
                self._remove(entry.entry_id)
            index = self._partitions.get(partition)
            if index is None:
                return []
        return [SearchHit(entry, s) for entry, s in found if not entry.expired(now)]

    def entries(self) -> list[Entry]:
        """Every entry, least recently used first."""
        return list(self._entries.values())

    async def vectors(self, entries: list[Entry]) -> dict[int, Vectors]:
        """The index's vectors of these entries (by entry id), e.g. for a snapshot."""
        wanted = await asyncio.to_thread(_by_partition, entries)  # O(n): not on the loop
        found: dict[int, Vectors] = {}
        for partition, entry_ids in wanted.items():
            index = self._partitions.get(partition)
            if index is not None:
                found.update(await self._runner.read(index, entry_ids))
        return found

    def index_stats(self) -> dict[str, int]:
        """Vectors per index kind and the bytes the indexes hold (read without the index lock:
        a gauge may be one change behind)."""
        stats = {"flat": 0, "ivf": 0, "bytes": 0, "rebuilding": 0}
        for index in list(self._partitions.values()):
            stats[index.kind] += len(index)
            stats["bytes"] += index.nbytes
            stats["rebuilding"] += index.rebuilding or index.rebuild_due()  # due: queued
        return stats

    def sweep(self, now: float) -> int:
        """Drops the entries expired at `now`; returns how many."""
        dropped = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, entry_id = heapq.heappop(self._expiries)
            entry = self._entries.get(entry_id)
            if entry is not None and entry.expired(now):
                self._remove(entry_id)
                dropped += 1
        return dropped

    def touch(self, entry_id: int) -> Entry | None:
        return self._touch(entry_id)

    def put(
        self,
        partition: str,
        exact: str,
        query_text: str,
        answer: Answer,
        vector: npt.NDArray[np.float32] | None,
        expires_at: float | None = None,
        created_at: float | None = None,
    ) -> Entry:
        old = self._by_exact.get(exact)
        if old is not None:
            self._remove(old)
        created = time.time() if created_at is None else created_at
        entry_id = next(self._ids)
        entry = Entry(entry_id, partition, exact, query_text, answer, None, created, expires_at)
        vector_bytes = 0 if vector is None else 4 * self._dimension + _INDEX_ID_BYTES
        entry.size_bytes = entry_bytes(query_text, exact, answer, vector_bytes)
        self.bytes += entry.size_bytes
        self._entries[entry_id] = entry
        self._by_exact[exact] = entry_id
        if expires_at is not None:
            self._push_expiry(expires_at, entry_id)
        if vector is not None:
            row = np.array(vector, dtype=np.float32)  # our own copy: the caller's may change
            self._runner.add(self._partition(partition), entry_id, row)
            self._partition_sizes[partition] += 1
            entry.indexed = True
        while len(self._entries) > self._max_entries or self._over_bytes():
            self._remove(next(iter(self._entries)))
            self.evictions += 1
        return entry

    def _over_bytes(self) -> bool:
        """Past max_bytes; the newest entry always stays, however large."""
        return self._max_bytes is not None and self.bytes > self._max_bytes and len(self) > 1

    def invalidate(self, model: str | None = None) -> int:
        """Drops every entry (of `model`, when given); later stores of older answers fail."""
        self.generation += 1
        if model is None:  # everything: new empty maps, no per-entry index work
            removed, self.bytes = len(self._entries), 0
            self._entries, self._by_exact, self._partitions = OrderedDict(), {}, {}
            self._partition_sizes, self._expiries = {}, []
            return removed
        doomed = [e for e in self._entries.values() if e.answer.model == model]
        by_partition: dict[str, list[int]] = {}
        for entry in doomed:
            del self._entries[entry.entry_id]
            self.bytes -= entry.size_bytes
            if self._by_exact.get(entry.exact) == entry.entry_id:
                del self._by_exact[entry.exact]
            if entry.indexed:
                by_partition.setdefault(entry.partition, []).append(entry.entry_id)
        for partition, entry_ids in by_partition.items():  # one index call per partition
            self._unindex(partition, entry_ids)
        return len(doomed)

    def remove_exact(self, exact: str) -> bool:
        """Drops the entry stored under this exact key (e.g. an answer reported wrong)."""
        entry_id = self._by_exact.get(exact)
        if entry_id is None:
            return False
        self._remove(entry_id)
        return True

    def _push_expiry(self, expires_at: float, entry_id: int) -> None:
        heapq.heappush(self._expiries, (expires_at, entry_id))
        if len(self._expiries) > 2 * len(self._entries) + 1024:  # evicted ids pile up: compact
            self._expiries = [
                (e.expires_at, e.entry_id) for e in self._entries.values() if e.expires_at
            ]
            heapq.heapify(self._expiries)

    def _touch(self, entry_id: int) -> Entry | None:
        entry = self._entries.get(entry_id)
        if entry is not None:
            self._entries.move_to_end(entry_id)
            entry.hits += 1
        return entry

    def _partition(self, partition: str) -> PartitionIndex:
        if partition not in self._partitions:
            self._partitions[partition] = PartitionIndex(self._dimension, self._index_settings)
            self._partition_sizes[partition] = 0
        return self._partitions[partition]

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        self.bytes -= entry.size_bytes
        if self._by_exact.get(entry.exact) == entry_id:
            del self._by_exact[entry.exact]
        if entry.indexed:
            self._unindex(entry.partition, [entry_id])

    def _unindex(self, partition: str, entry_ids: list[int]) -> None:
        """Drops these vectors (ids without one are ignored); an emptied partition goes."""
        index = self._partitions.get(partition)
        if index is None:
            return
        self._runner.remove(index, entry_ids)
        self._partition_sizes[partition] -= len(entry_ids)
        if self._partition_sizes[partition] <= 0:
            del self._partitions[partition], self._partition_sizes[partition]


def _by_partition(entries: list[Entry]) -> dict[str, list[int]]:
    wanted: dict[str, list[int]] = {}
    for entry in entries:
        if entry.indexed:
            wanted.setdefault(entry.partition, []).append(entry.entry_id)
    return wanted


class CacheStore:
    """Tenant name -> TenantCache, created on first use; all share one index thread."""

    def __init__(
        self,
        dimension: int,
        max_entries: int,
        index: IndexSettings | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self._dimension = dimension
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._index_settings = index or IndexSettings()
        self._tenants: dict[str, TenantCache] = {}
        self.index_thread = IndexThread()

    def tenant(self, name: str) -> TenantCache:
        if name not in self._tenants:
            self._tenants[name] = TenantCache(
                self._dimension,
                self._max_entries,
                self._index_settings,
                self.index_thread,
                self._max_bytes,
            )
        return self._tenants[name]

    def tenant_names(self) -> list[str]:
        return list(self._tenants)

    def new_tenant_cache(self) -> TenantCache:
        """An empty cache with this store's settings, filled aside (inline), then swapped in."""
        return TenantCache(
            self._dimension, self._max_entries, self._index_settings, max_bytes=self._max_bytes
        )

    def replace_tenant(self, name: str, cache: TenantCache) -> None:
        old = self._tenants.get(name)
        if old is not None:  # a store begun before the swap must still see the invalidation
            cache.generation = max(cache.generation, old.generation + 1)
        cache.bind(self.index_thread)
        self._tenants[name] = cache

    def sweep(self, now: float) -> int:
        return sum(cache.sweep(now) for cache in self._tenants.values())

    def invalidate(self, tenant: str | None = None, model: str | None = None) -> int:
        names = [tenant] if tenant is not None else list(self._tenants)
        return sum(self._tenants[n].invalidate(model) for n in names if n in self._tenants)

    def drop_tenant(self, name: str) -> None:
        self._tenants.pop(name, None)

    def close(self) -> None:
        self.index_thread.close()

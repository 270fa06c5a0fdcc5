"""Per-tenant cache: LRU-bounded entries, an exact map and a vector index per partition.

Every lookup is scoped to one tenant's TenantCache: there is no shared index through which
one tenant's request could reach another tenant's entry. All mutation happens on the event
loop (operations are sub-millisecond), so no locks are needed.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cache_proxy.store.entry import Answer, Entry
from cache_proxy.store.vector_index import IndexKind, PartitionIndex


@dataclass(frozen=True)
class SearchHit:
    entry: Entry
    similarity: float


class TenantCache:
    def __init__(self, dimension: int, max_entries: int, index_kind: IndexKind = "flat") -> None:
        self._dimension = dimension
        self._max_entries = max_entries
        self._index_kind = index_kind
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._by_exact: dict[str, int] = {}
        self._partitions: dict[str, PartitionIndex] = {}
        self._ids = itertools.count(1)
        self.evictions = 0
        # Bumped by invalidation: an answer fetched before it must not be stored after it.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_exact(self, exact: str) -> Entry | None:
        entry_id = self._by_exact.get(exact)
        return self._touch(entry_id) if entry_id is not None else None

    def search(self, partition: str, vector: npt.NDArray[np.float32], k: int) -> list[SearchHit]:
        index = self._partitions.get(partition)
        if index is None:
            return []
        return [
            SearchHit(self._entries[entry_id], similarity)
            for entry_id, similarity in index.search(vector, k)
        ]

    def touch(self, entry_id: int) -> Entry | None:
        return self._touch(entry_id)

    def put(
        self,
        partition: str,
        exact: str,
        query_text: str,
        answer: Answer,
        vector: npt.NDArray[np.float32] | None,
    ) -> Entry:
        old = self._by_exact.get(exact)
        if old is not None:
            self._remove(old)
        entry = Entry(next(self._ids), partition, exact, query_text, answer, vector, time.time())
        self._entries[entry.entry_id] = entry
        self._by_exact[exact] = entry.entry_id
        if vector is not None:
            self._partition(partition).add(entry.entry_id, vector)
        while len(self._entries) > self._max_entries:
            self._remove(next(iter(self._entries)))
            self.evictions += 1
        return entry

    def invalidate(self, model: str | None = None) -> int:
        self.generation += 1
        doomed = [e.entry_id for e in self._entries.values() if model in (None, e.answer.model)]
        for entry_id in doomed:
            self._remove(entry_id)
        return len(doomed)

    def remove_exact(self, exact: str) -> bool:
        """Drops the entry stored under this exact key (e.g. an answer reported wrong)."""
        entry_id = self._by_exact.get(exact)
        if entry_id is None:
            return False
        self._remove(entry_id)
        return True

    def _touch(self, entry_id: int) -> Entry | None:
        entry = self._entries.get(entry_id)
        if entry is not None:
            self._entries.move_to_end(entry_id)
            entry.hits += 1
        return entry

    def _partition(self, partition: str) -> PartitionIndex:
        if partition not in self._partitions:
            self._partitions[partition] = PartitionIndex(self._dimension, self._index_kind)
        return self._partitions[partition]

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        if self._by_exact.get(entry.exact) == entry_id:
            del self._by_exact[entry.exact]
        index = self._partitions.get(entry.partition)
        if index is not None:
            index.remove(entry_id)
            if not index:
                del self._partitions[entry.partition]


class CacheStore:
    """Tenant name -> TenantCache, created on first use."""

    def __init__(self, dimension: int, max_entries: int, index_kind: IndexKind = "flat") -> None:
        self._dimension = dimension
        self._max_entries = max_entries
        self._index_kind = index_kind
        self._tenants: dict[str, TenantCache] = {}

    def tenant(self, name: str) -> TenantCache:
        if name not in self._tenants:
            self._tenants[name] = TenantCache(self._dimension, self._max_entries, self._index_kind)
        return self._tenants[name]

    def tenant_names(self) -> list[str]:
        return list(self._tenants)

    def invalidate(self, tenant: str | None = None, model: str | None = None) -> int:
        names = [tenant] if tenant is not None else list(self._tenants)
        return sum(self._tenants[n].invalidate(model) for n in names if n in self._tenants)

    def drop_tenant(self, name: str) -> None:
        self._tenants.pop(name, None)

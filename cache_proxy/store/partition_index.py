"""One partition's vectors, and the policy that picks their index and rebuilds it aside.

A rebuild (flat -> IVF as a partition grows, an IVF retrained at 4x its training size, back
to flat when it shrinks) is three steps so that the live index keeps serving meanwhile:
`begin_rebuild` copies the vectors and returns the build job (run on any thread), every
change made in between is recorded, and `finish_rebuild` replays them on the new index and
swaps it in. Thread-confined like the stores in vector_index.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from cache_proxy.config import IndexSettings
from cache_proxy.store.vector_index import (
    IVF_MIN_TRAIN,
    RETRAIN_GROWTH,
    FlatVectors,
    Found,
    Ids,
    IvfVectors,
    Vectors,
    VectorStore,
)

Change = tuple[Literal["add", "remove"], Ids, Vectors | None]
BuildJob = Callable[[], VectorStore]


class PartitionIndex:
    def __init__(self, dimension: int, settings: IndexSettings) -> None:
        self._dimension = dimension
        self._settings = settings
        self._store: VectorStore = FlatVectors(dimension)
        self._changes: list[Change] | None = None  # recorded while a rebuild is under way

    def __len__(self) -> int:
        return len(self._store)

    @property
    def kind(self) -> str:
        return self._store.kind

    @property
    def nbytes(self) -> int:
        return self._store.nbytes

    @property
    def rebuilding(self) -> bool:
        return self._changes is not None

    def add(self, entry_id: int, vector: Vectors) -> None:
        self.add_many([entry_id], vector.reshape(1, -1))

    def add_many(self, entry_ids: list[int], vectors: Vectors) -> None:
        """One call for many (an IVF assigns a batch of vectors to lists in one BLAS call)."""
        ids = np.array(entry_ids, dtype=np.int64)
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        if rows.shape != (len(ids), self._dimension):
            raise ValueError(
                f"vectors of shape {rows.shape}, expected ({len(ids)}, {self._dimension})"
            )
        self._store.add(ids, rows)
        if self._changes is not None:
            self._changes.append(("add", ids, rows))

    def remove_many(self, entry_ids: list[int]) -> None:
        ids = np.array(entry_ids, dtype=np.int64)
        self._store.remove(ids)
        if self._changes is not None:
            self._changes.append(("remove", ids, None))

    def search_many(self, queries: Vectors, k: int) -> list[Found]:
        return self._store.search(np.ascontiguousarray(queries, dtype=np.float32), k)

    def vectors_of(self, entry_ids: list[int]) -> dict[int, Vectors]:
        return self._store.vectors_of(entry_ids)

    def rebuild_due(self) -> bool:
        return self._changes is None and self._target_kind() is not None

    def begin_rebuild(self) -> BuildJob:
        target = self._target_kind()
        ids, vectors = self._store.vectors()
        self._changes = []
        dimension, nprobe = self._dimension, self._settings.nprobe

        def build() -> VectorStore:
            if target == "ivf":
                return IvfVectors.build(ids, vectors, nprobe)
            flat = FlatVectors(dimension)
            flat.add(ids, vectors)
            return flat

        return build

    def finish_rebuild(self, built: VectorStore) -> None:
        for change, ids, rows in self._changes or []:
            if change == "add" and rows is not None:
                built.add(ids, rows)
            else:
                built.remove(ids)
        self._store, self._changes = built, None

    def abandon_rebuild(self) -> None:
        self._changes = None

    def rebuild_now(self) -> None:
        self.finish_rebuild(self.begin_rebuild()())

    def _ivf_from(self) -> int:
        if self._settings.kind == "ivf":
            return IVF_MIN_TRAIN
        return max(IVF_MIN_TRAIN, self._settings.ivf_min_entries)

    def _target_kind(self) -> str | None:
        """The kind a rebuild would make now, or None when the current index fits."""
        if self._settings.kind == "flat":
            return None
        count, store = len(self._store), self._store
        if isinstance(store, FlatVectors):
            return "ivf" if count >= self._ivf_from() else None
        if count < self._ivf_from() // 2:
            return "flat"
        return "ivf" if count >= RETRAIN_GROWTH * store.trained_on else None

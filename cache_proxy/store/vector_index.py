"""One FAISS inner-product index per partition (vectors are normalised: IP = cosine)."""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt

IndexKind = Literal["flat", "hnsw"]
# HNSW cannot delete: removed ids are skipped at search and the graph rebuilt past this share.
_REBUILD_TOMBSTONE_SHARE = 0.25
_HNSW_NEIGHBOURS = 32


class PartitionIndex:
    def __init__(self, dimension: int, kind: IndexKind = "flat") -> None:
        self._dimension = dimension
        self._kind = kind
        self._vectors: dict[int, npt.NDArray[np.float32]] = {}
        self._tombstones = 0
        self._index = self._new_index()

    def __len__(self) -> int:
        return len(self._vectors)

    def add(self, entry_id: int, vector: npt.NDArray[np.float32]) -> None:
        row = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        self._vectors[entry_id] = row[0]
        self._index.add_with_ids(row, np.array([entry_id], dtype=np.int64))

    def remove(self, entry_id: int) -> None:
        self.remove_many([entry_id])

    def remove_many(self, entry_ids: list[int]) -> None:
        """One pass over the index for all of them (a flat remove_ids is O(n) per call)."""
        gone = [i for i in entry_ids if self._vectors.pop(i, None) is not None]
        if not gone:
            return
        if self._kind == "flat":
            self._index.remove_ids(np.array(gone, dtype=np.int64))  # type: ignore[arg-type]
            return
        self._tombstones += len(gone)
        if self._tombstones > _REBUILD_TOMBSTONE_SHARE * max(len(self._vectors), 1):
            self._rebuild()

    def search(self, vector: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """Up to k (entry_id, cosine similarity) pairs, best first."""
        if not self._vectors:
            return []
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        fetch = min(k + self._tombstones, self._index.ntotal)
        scores, ids = self._index.search(query, fetch)
        found = [
            (int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and int(i) in self._vectors
        ]
        return found[:k]

    def _new_index(self) -> faiss.Index:
        if self._kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatIP(self._dimension))
        hnsw = faiss.IndexHNSWFlat(self._dimension, _HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = 64
        return faiss.IndexIDMap2(hnsw)

    def _rebuild(self) -> None:
        self._index = self._new_index()
        self._tombstones = 0
        if self._vectors:
            ids = np.fromiter(self._vectors.keys(), dtype=np.int64)
            self._index.add_with_ids(np.stack(list(self._vectors.values())), ids)

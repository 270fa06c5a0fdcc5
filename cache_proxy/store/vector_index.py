"""The vectors of one partition: exact (flat) while small, an IVF index once it grows.

Every method is O(1) or O(log n) per vector except `search` (O(n) flat, O(n·nprobe/nlist) IVF)
and the rebuild, which builds the new index beside the old one (see PartitionIndex).
These objects are thread-confined: once their cache is published only the index thread
(store/index_thread.py) calls them; a cache still being built aside calls them inline.
"""

from __future__ import annotations

import math

import faiss
import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
Ids = npt.NDArray[np.int64]
Found = list[tuple[int, float]]  # (entry_id, cosine similarity), best first
# Below this many vectors an IVF index is not trained (k-means needs points per centroid).
IVF_MIN_TRAIN = 1_000
_MAX_NLIST = 2_048  # a 1M-vector build: ~15 s k-means + ~25 s assignment on one core
_TRAIN_POINTS_PER_LIST = 40
# An IVF index is retrained (beside the old one) once it holds this many times its
# training size: the lists it was trained for grow long and searches slow down.
RETRAIN_GROWTH = 4
_FLAT_INITIAL_ROWS = 256


def nlist_for(count: int) -> int:
    """IVF lists for `count` vectors: about 4·sqrt(n), each list trained on enough points."""
    by_size = int(4 * math.sqrt(count))
    by_training = count // _TRAIN_POINTS_PER_LIST
    return max(1, min(_MAX_NLIST, by_size, by_training))


class FlatVectors:
    """Exact search over a dense matrix; a delete moves the last row into the hole (O(d))."""

    kind = "flat"

    def __init__(self, dimension: int) -> None:
        self._matrix = np.zeros((_FLAT_INITIAL_ROWS, dimension), dtype=np.float32)
        self._ids = np.zeros(_FLAT_INITIAL_ROWS, dtype=np.int64)
        self._row_of: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def nbytes(self) -> int:
        return int(self._matrix.nbytes + self._ids.nbytes)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        for entry_id, vector in zip(ids.tolist(), vectors, strict=True):
            row = self._row_of.get(entry_id)
            if row is None:
                row = len(self._row_of)
                self._grow_to(row + 1)
                self._row_of[entry_id] = row
                self._ids[row] = entry_id
            self._matrix[row] = vector

    def remove(self, ids: Ids) -> None:
        for entry_id in ids.tolist():
            row = self._row_of.pop(entry_id, None)
            if row is None:
                continue
            last = len(self._row_of)  # the row count before this removal, minus one
            if row != last:
                moved = int(self._ids[last])
                self._matrix[row] = self._matrix[last]
                self._ids[row] = moved
                self._row_of[moved] = row

    def search(self, queries: Vectors, k: int) -> list[Found]:
        count = len(self._row_of)
        if count == 0:
            return [[] for _ in range(len(queries))]
        scores = queries @ self._matrix[:count].T  # one BLAS call for the whole batch
        top = min(k, count)
        best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        found: list[Found] = []
        for row_scores, rows in zip(scores, best, strict=True):
            ordered = rows[np.argsort(-row_scores[rows])]
            found.append([(int(self._ids[r]), float(row_scores[r])) for r in ordered])
        return found

    def vectors(self) -> tuple[Ids, Vectors]:
        count = len(self._row_of)
        return self._ids[:count].copy(), self._matrix[:count].copy()

    def vectors_of(self, ids: list[int]) -> dict[int, Vectors]:
        return {i: self._matrix[r].copy() for i in ids if (r := self._row_of.get(i)) is not None}

    def _grow_to(self, rows: int) -> None:
        if rows <= len(self._ids):
            return
        capacity = max(rows, 2 * len(self._ids))  # doubling: amortised O(d) per add
        matrix = np.zeros((capacity, self._matrix.shape[1]), dtype=np.float32)
        matrix[: len(self._matrix)] = self._matrix
        ids = np.zeros(capacity, dtype=np.int64)
        ids[: len(self._ids)] = self._ids
        self._matrix, self._ids = matrix, ids


class IvfVectors:
    """FAISS IVF-Flat with a hash-table id map, so a delete is O(1) instead of a scan."""

    kind = "ivf"

    def __init__(self, index: faiss.IndexIVFFlat, trained_on: int) -> None:
        self._index = index
        self.trained_on = trained_on

    @classmethod
    def build(cls, ids: Ids, vectors: Vectors, nprobe: int) -> IvfVectors:
        dimension = vectors.shape[1]
        nlist = nlist_for(len(vectors))
        index = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(dimension), dimension, nlist, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.max_points_per_centroid = 32  # bounds k-means time on big partitions
        index.cp.niter = 10  # recall on QQP is unchanged from the default 25 (bench.scale)
        index.train(vectors)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]  # not in the stubs
        index.nprobe = nprobe
        index.add_with_ids(vectors, ids)
        return cls(index, len(vectors))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        codes = self._index.ntotal * (self._index.code_size + 8)  # vector + id in its list
        centroids = self._index.nlist * self._index.d * 4
        return int(codes + centroids + self._index.ntotal * 16)  # + the id -> slot table

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self._index.remove_ids(faiss.IDSelectorArray(ids))  # a re-add replaces
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: Ids) -> None:
        self._index.remove_ids(faiss.IDSelectorArray(ids))

    def search(self, queries: Vectors, k: int) -> list[Found]:
        scores, ids = self._index.search(queries, k)
        return [
            [(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def vectors(self) -> tuple[Ids, Vectors]:
        lists = self._index.invlists
        assert lists is not None  # an IVF index always has its lists
        all_ids, all_vectors = [], []
        for list_no in range(self._index.nlist):
            size = lists.list_size(list_no)
            if size == 0:
                continue
            ids = faiss.rev_swig_ptr(lists.get_ids(list_no), size)
            codes = faiss.rev_swig_ptr(lists.get_codes(list_no), size * self._index.code_size)
            all_ids.append(np.array(ids, dtype=np.int64))
            all_vectors.append(np.frombuffer(codes, dtype=np.float32).reshape(size, -1).copy())
        if not all_ids:
            return np.zeros(0, dtype=np.int64), np.zeros((0, self._index.d), dtype=np.float32)
        return np.concatenate(all_ids), np.concatenate(all_vectors)

    def vectors_of(self, ids: list[int]) -> dict[int, Vectors]:
        found: dict[int, Vectors] = {}
        for entry_id in ids:
            try:
                found[entry_id] = np.asarray(self._index.reconstruct(entry_id), dtype=np.float32)
            except RuntimeError:  # not (or no longer) in the index
                continue
        return found


VectorStore = FlatVectors | IvfVectors

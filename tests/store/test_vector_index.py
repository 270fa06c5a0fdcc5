from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from cache_proxy.config import IndexSettings
from cache_proxy.store.partition_index import PartitionIndex
from cache_proxy.store.vector_index import FlatVectors, IvfVectors, nlist_for

DIM = 16


def units(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    normalised: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


def ids(count: int, start: int = 0) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int64)


def brute_force_top1(vectors: np.ndarray, queries: np.ndarray) -> list[int]:
    return [int(i) for i in np.argmax(queries @ vectors.T, axis=1)]


def test_flat_search_is_exact_and_ordered() -> None:
    vectors, queries = units(300), units(20, seed=1)
    flat = FlatVectors(DIM)
    flat.add(ids(300, 1000), vectors)
    found = flat.search(queries, 5)
    assert [f[0][0] - 1000 for f in found] == brute_force_top1(vectors, queries)
    for row in found:
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True) and len(row) == 5


def test_flat_remove_moves_the_last_row_and_keeps_every_other_vector_findable() -> None:
    vectors = units(50)
    flat = FlatVectors(DIM)
    flat.add(ids(50), vectors)
    flat.remove(np.array([0, 17, 49, 17, 999], dtype=np.int64))  # repeats and unknowns: no-op
    assert len(flat) == 47
    for i in range(50):
        top = flat.search(vectors[i : i + 1], 1)[0][0]
        if i in (0, 17, 49):
            assert top[0] != i
        else:
            assert top[0] == i and top[1] == pytest.approx(1.0, abs=1e-5)
    kept_ids, kept = flat.vectors()
    assert sorted(kept_ids.tolist()) == sorted(set(range(50)) - {0, 17, 49})
    assert np.allclose(kept, vectors[kept_ids])


def test_flat_grows_past_its_first_allocation_and_replaces_a_re_added_id() -> None:
    vectors = units(1000)
    flat = FlatVectors(DIM)
    flat.add(ids(1000), vectors)
    flat.add(np.array([3], dtype=np.int64), vectors[4:5])
    assert len(flat) == 1000 and np.allclose(flat.vectors_of([3])[3], vectors[4])


def test_ivf_deletes_in_place_and_round_trips_its_vectors() -> None:
    vectors = units(4000)
    ivf = IvfVectors.build(ids(4000), vectors, nprobe=nlist_for(4000))  # all lists: exact
    assert ivf.trained_on == 4000 and len(ivf) == 4000
    queries = vectors[:50]
    assert [f[0][0] for f in ivf.search(queries, 1)] == list(range(50))
    ivf.remove(ids(10))
    assert len(ivf) == 3990 and all(f[0][0] >= 10 for f in ivf.search(queries[:10], 1))
    ivf.add(ids(1, 5000), vectors[:1])
    (found_id, found_score), *_ = ivf.search(queries[:1], 1)[0]
    assert found_id == 5000 and found_score == pytest.approx(1.0, abs=1e-5)
    got_ids, got = ivf.vectors()
    assert len(got_ids) == 3991 and np.allclose(got[got_ids == 5000][0], vectors[0])
    assert set(ivf.vectors_of([5000, 3, 11])) == {5000, 11}  # 3 was removed


def test_nlist_keeps_enough_training_points_per_list() -> None:
    assert nlist_for(1000) == 25 and nlist_for(20_000) == 500 and nlist_for(10**7) == 2048


def test_auto_switches_to_ivf_at_its_size_and_back_to_flat_when_it_shrinks() -> None:
    index = PartitionIndex(DIM, IndexSettings("auto", ivf_min_entries=1000, nprobe=64))
    vectors = units(1200)
    for i in range(999):
        index.add(i, vectors[i])
    assert not index.rebuild_due() and index.kind == "flat"
    index.add(999, vectors[999])
    assert index.rebuild_due()
    index.rebuild_now()
    assert index.kind == "ivf" and len(index) == 1000 and not index.rebuild_due()
    index.remove_many(list(range(501)))
    assert index.rebuild_due()  # 499 left, under half of 1,000
    index.rebuild_now()
    assert index.kind == "flat" and len(index) == 499


def test_flat_kind_never_rebuilds() -> None:
    index = PartitionIndex(DIM, IndexSettings("flat", ivf_min_entries=1000))
    for i, vector in enumerate(units(1500)):
        index.add(i, vector)
    assert index.kind == "flat" and not index.rebuild_due()


def test_changes_made_during_a_rebuild_reach_the_new_index() -> None:
    index = PartitionIndex(DIM, IndexSettings("ivf", nprobe=4096))
    vectors = units(1100)
    for i in range(1000):
        index.add(i, vectors[i])
    job = index.begin_rebuild()
    assert index.rebuilding and not index.rebuild_due()
    for i in range(1000, 1100):  # meanwhile the live (flat) index keeps changing
        index.add(i, vectors[i])
    index.remove_many([0, 1, 1050])
    assert index.search_many(vectors[1050:1051], 1)[0][0][0] != 1050
    built = job()
    index.finish_rebuild(built)
    assert index.kind == "ivf" and len(index) == 1097 and not index.rebuilding
    top = [f[0][0] for f in index.search_many(vectors[[0, 1, 1050, 1099, 500]], 1)]
    assert top[0] not in (0, 1) and top[2] != 1050 and top[3:] == [1099, 500]

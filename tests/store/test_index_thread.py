from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from cache_proxy.config import IndexSettings
from cache_proxy.store.index_thread import IndexThread
from cache_proxy.store.partition_index import PartitionIndex
from cache_proxy.store.vector_index import Found, Vectors
from tests.support.waiting import wait_until

DIM = 16


def units(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    normalised: npt.NDArray[np.float32] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return normalised


class CountingIndex(PartitionIndex):
    """A real index that also records which thread ran each search and how many queries."""

    def __init__(self, settings: IndexSettings) -> None:
        super().__init__(DIM, settings)
        self.batches: list[tuple[str, int]] = []
        self.add_calls = 0

    def add_many(self, entry_ids: list[int], vectors: Vectors) -> None:
        self.add_calls += 1
        super().add_many(entry_ids, vectors)

    def search_many(self, queries: Vectors, k: int) -> list[Found]:
        self.batches.append((threading.current_thread().name, len(queries)))
        return super().search_many(queries, k)


@pytest.fixture
def thread() -> Iterator[IndexThread]:
    worker = IndexThread()
    yield worker
    worker.close()


async def test_a_search_sees_every_write_enqueued_before_it(thread: IndexThread) -> None:
    index, vectors = CountingIndex(IndexSettings("flat")), units(200)
    for i in range(200):
        thread.add(index, i, vectors[i])
    thread.remove(index, [7])
    assert (await thread.search(index, vectors[3], 1))[0][0] == 3
    assert (await thread.search(index, vectors[7], 1))[0][0] != 7
    assert all(name == "faiss-index" for name, _ in index.batches)  # never the loop's thread


async def test_concurrent_searches_run_as_batches(thread: IndexThread) -> None:
    index, vectors = CountingIndex(IndexSettings("flat")), units(500)
    for i in range(500):
        thread.add(index, i, vectors[i])
    found = await asyncio.gather(*(thread.search(index, vectors[i], 1) for i in range(64)))
    assert [f[0][0] for f in found] == list(range(64))
    assert sum(n for _, n in index.batches) == 64 and len(index.batches) < 64


async def test_interleaved_adds_and_removes_end_as_if_run_in_order(thread: IndexThread) -> None:
    index, vectors = CountingIndex(IndexSettings("flat")), units(300)
    for i in range(300):
        thread.add(index, i, vectors[i])
        if i % 3 == 0:  # an eviction right after its add, as at capacity
            thread.remove(index, [i])
    found = await asyncio.gather(*(thread.search(index, vectors[i], 1) for i in range(300)))
    assert len(index) == 200
    assert all((f[0][0] == i) == (i % 3 != 0) for i, f in enumerate(found))
    assert index.add_calls < 300  # batched, not one FAISS call per vector


async def test_a_cancelled_search_does_not_stop_the_thread(thread: IndexThread) -> None:
    index, vectors = CountingIndex(IndexSettings("flat")), units(10)
    thread.add(index, 1, vectors[1])
    task = asyncio.ensure_future(thread.search(index, vectors[1], 1))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await thread.search(index, vectors[1], 1))[0][0] == 1


async def test_a_failing_edit_is_logged_and_later_work_goes_on(thread: IndexThread) -> None:
    index, vectors = CountingIndex(IndexSettings("flat")), units(10)
    thread.add(index, 1, np.zeros(DIM + 1, dtype=np.float32))  # bad shape
    thread.add(index, 2, vectors[2])
    assert (await thread.search(index, vectors[2], 1))[0][0] == 2


async def test_the_rebuild_runs_aside_and_misses_no_change(thread: IndexThread) -> None:
    index = CountingIndex(IndexSettings("auto", ivf_min_entries=1000, nprobe=4096))
    vectors = units(3000)
    for i in range(1000):  # the 1,000th add starts the flat -> IVF build on the other thread
        thread.add(index, i, vectors[i])
    for i in range(1000, 3000):  # keeps writing and searching while it builds
        thread.add(index, i, vectors[i])
        if i % 50 == 0:
            assert (await thread.search(index, vectors[i], 1))[0][0] == i
    thread.remove(index, [0, 2999])
    await wait_until(lambda: thread.rebuilds >= 1 and not index.rebuilding, 30, "the rebuild")
    assert (await thread.search(index, vectors[5], 1))[0][0] == 5 and index.kind == "ivf"
    found = [f[0][0] for f in [await thread.search(index, vectors[i], 1) for i in (0, 2999, 2998)]]
    assert found[0] != 0 and found[1] != 2999 and found[2] == 2998 and len(index) == 2998


def test_a_closed_thread_refuses_work() -> None:
    worker = IndexThread()
    worker.close()
    with pytest.raises(RuntimeError):
        worker.remove(PartitionIndex(DIM, IndexSettings()), [1])

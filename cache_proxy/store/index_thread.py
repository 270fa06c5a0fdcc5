"""Where FAISS work runs: a dedicated thread for published caches, inline for caches aside.

The event loop never searches or edits an index itself. With the IndexThread it only
enqueues: a write returns at once, a search awaits a future. Work runs in the order it was
asked, so a search sees every write enqueued before it, and consecutive searches of one
partition run as one batched call (one BLAS/FAISS call for many queries). FAISS and numpy
release the GIL, so the loop keeps answering meanwhile. Rebuilds run on a second thread
beside the live index, which keeps serving; the swap replays what changed in between.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cache_proxy.store.partition_index import BuildJob, PartitionIndex
from cache_proxy.store.vector_index import Found, Vectors

logger = logging.getLogger(__name__)
Edit = Callable[[PartitionIndex], None]


class IndexRunner(Protocol):
    def write(self, index: PartitionIndex, edit: Edit) -> None: ...

    async def search(self, index: PartitionIndex, vector: Vectors, k: int) -> Found: ...

    async def read(self, index: PartitionIndex, entry_ids: list[int]) -> dict[int, Vectors]: ...


class InlineRunner:
    """A cache nobody reads yet (built aside, or a unit test): work runs in the caller. It
    does not rebuild: a bulk load stays flat (cheap adds) until the IndexThread takes it."""

    def write(self, index: PartitionIndex, edit: Edit) -> None:
        edit(index)

    async def search(self, index: PartitionIndex, vector: Vectors, k: int) -> Found:
        return index.search_many(vector.reshape(1, -1), k)[0]

    async def read(self, index: PartitionIndex, entry_ids: list[int]) -> dict[int, Vectors]:
        return index.vectors_of(entry_ids)


@dataclass(frozen=True)
class _Write:
    index: PartitionIndex
    edit: Edit


@dataclass(frozen=True)
class _Search:
    index: PartitionIndex
    vector: Vectors
    k: int
    result: Future[Found]


@dataclass(frozen=True)
class _Read:
    index: PartitionIndex
    entry_ids: list[int]
    result: Future[dict[int, Vectors]]


_Work = _Write | _Search | _Read


class IndexThread:
    def __init__(self) -> None:
        self._queue: deque[_Work] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="faiss-index", daemon=True)
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="faiss-rebuild")
        self._started = False
        self.rebuilds = 0

    def write(self, index: PartitionIndex, edit: Edit) -> None:
        self._put(_Write(index, edit))

    async def search(self, index: PartitionIndex, vector: Vectors, k: int) -> Found:
        result: Future[Found] = Future()
        self._put(_Search(index, vector, k, result))
        return await asyncio.wrap_future(result)

    async def read(self, index: PartitionIndex, entry_ids: list[int]) -> dict[int, Vectors]:
        result: Future[dict[int, Vectors]] = Future()
        self._put(_Read(index, entry_ids, result))
        return await asyncio.wrap_future(result)

    def adopt(self, index: PartitionIndex) -> None:
        """Takes over an index built inline: starts the rebuild it is due, if any."""
        self._put(_Write(index, _no_edit))

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._started:
            self._thread.join(timeout=5)
        self._builder.shutdown(wait=False, cancel_futures=True)

    def _put(self, work: _Work) -> None:
        with self._ready:
            if self._closed:
                raise RuntimeError("the index thread is closed")
            if not self._started:
                self._thread.start()
                self._started = True
            self._queue.append(work)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Work]) -> None:
        i = 0
        while i < len(batch):
            work = batch[i]
            if isinstance(work, _Search):
                j = i + 1
                while j < len(batch) and _same_search(batch[j], work):
                    j += 1
                self._search([w for w in batch[i:j] if isinstance(w, _Search)])
                i = j
                continue
            if isinstance(work, _Read):
                _settle(work)
            else:
                self._write(work)
            i += 1

    def _search(self, group: list[_Search]) -> None:
        live = [w for w in group if w.result.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            queries = np.stack([w.vector.reshape(-1) for w in live])
            found = live[0].index.search_many(queries, live[0].k)
        except Exception as exc:  # every waiter learns it; the thread goes on
            for w in live:
                w.result.set_exception(exc)
            return
        for w, result in zip(live, found, strict=True):
            w.result.set_result(result)

    def _write(self, work: _Write) -> None:
        try:
            work.edit(work.index)
        except Exception as exc:  # a bad vector must not stop every later search
            logger.error("an index edit failed: %s", type(exc).__name__, exc_info=exc)
            return
        if work.index.rebuild_due():
            job = work.index.begin_rebuild()
            self._builder.submit(self._build, work.index, job)

    def _build(self, index: PartitionIndex, job: BuildJob) -> None:
        started, count = time.perf_counter(), len(index)
        logger.info("index rebuild of %d vectors (%s) started", count, index.kind)
        try:
            built = job()
        except Exception as exc:
            logger.error("an index rebuild failed: %s", type(exc).__name__, exc_info=exc)
            self._put_quietly(_Write(index, PartitionIndex.abandon_rebuild))
            return
        logger.info(
            "index rebuild of %d vectors done in %.1f s: %s",
            count,
            time.perf_counter() - started,
            built.kind,
        )
        self.rebuilds += 1
        self._put_quietly(_Write(index, lambda ix: ix.finish_rebuild(built)))

    def _put_quietly(self, work: _Work) -> None:
        try:
            self._put(work)
        except RuntimeError:  # closed meanwhile: the index goes with the process
            return


def _no_edit(index: PartitionIndex) -> None:
    return None


def _same_search(work: _Work, first: _Search) -> bool:
    return isinstance(work, _Search) and work.index is first.index and work.k == first.k


def _settle(read: _Read) -> None:
    if not read.result.set_running_or_notify_cancel():
        return
    try:
        read.result.set_result(read.index.vectors_of(read.entry_ids))
    except Exception as exc:
        read.result.set_exception(exc)

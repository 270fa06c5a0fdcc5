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
from functools import partial
from typing import Protocol

import numpy as np

from cache_proxy.store.partition_index import BuildJob, PartitionIndex
from cache_proxy.store.vector_index import Found, Vectors

logger = logging.getLogger(__name__)
Edit = Callable[[PartitionIndex], None]


class IndexRunner(Protocol):
    def add(self, index: PartitionIndex, entry_id: int, vector: Vectors) -> None: ...

    def remove(self, index: PartitionIndex, entry_ids: list[int]) -> None: ...

    async def search(self, index: PartitionIndex, vector: Vectors, k: int) -> Found: ...

    async def read(self, index: PartitionIndex, entry_ids: list[int]) -> dict[int, Vectors]: ...


class InlineRunner:
    """A cache nobody reads yet (built aside, or a unit test): work runs in the caller. It
    does not rebuild: a bulk load stays flat (cheap adds) until the IndexThread takes it."""

    def add(self, index: PartitionIndex, entry_id: int, vector: Vectors) -> None:
        index.add(entry_id, vector)

    def remove(self, index: PartitionIndex, entry_ids: list[int]) -> None:
        index.remove_many(entry_ids)

    async def search(self, index: PartitionIndex, vector: Vectors, k: int) -> Found:
        return index.search_many(vector.reshape(1, -1), k)[0]

    async def read(self, index: PartitionIndex, entry_ids: list[int]) -> dict[int, Vectors]:
        return index.vectors_of(entry_ids)


@dataclass(frozen=True)
class _Add:
    index: PartitionIndex
    entry_id: int
    vector: Vectors


@dataclass(frozen=True)
class _Remove:
    index: PartitionIndex
    entry_ids: list[int]


@dataclass(frozen=True)
class _Call:
    """Anything else done to an index (swap in a rebuild, adopt it): runs in its turn."""

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


_Work = _Add | _Remove | _Call | _Search | _Read


class IndexThread:
    def __init__(self) -> None:
        self._queue: deque[_Work] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="faiss-index", daemon=True)
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="faiss-rebuild")
        self._started = False
        self.rebuilds = 0

    def add(self, index: PartitionIndex, entry_id: int, vector: Vectors) -> None:
        self._put(_Add(index, entry_id, vector))

    def remove(self, index: PartitionIndex, entry_ids: list[int]) -> None:
        self._put(_Remove(index, entry_ids))

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
        self._put(_Call(index, _no_edit))

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
        edits = _PendingEdits()
        i = 0
        while i < len(batch):
            work = batch[i]
            if isinstance(work, _Add | _Remove):
                edits.collect(work)
                i += 1
                continue
            self._apply(edits)  # what was asked before a search or call, it sees
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
                self._call(work.index, work.edit)
            i += 1
        self._apply(edits)

    def _apply(self, edits: _PendingEdits) -> None:
        """Adds then removes, per index, batched. Equivalent to their order: an id is added
        once (ids are never reused) and only removed after its add was enqueued."""
        for index, adds, removes in edits.drain():
            if adds:
                _add_all(index, adds)
            if removes:
                self._call(index, partial(PartitionIndex.remove_many, entry_ids=removes), False)
            self._maybe_rebuild(index)

    def _call(self, index: PartitionIndex, edit: Edit, check: bool = True) -> None:
        try:
            edit(index)
        except Exception as exc:  # one bad edit must not stop every later search
            logger.error("an index edit failed: %s", type(exc).__name__, exc_info=exc)
            return
        if check:
            self._maybe_rebuild(index)

    def _maybe_rebuild(self, index: PartitionIndex) -> None:
        if index.rebuild_due():
            job = index.begin_rebuild()
            self._builder.submit(self._build, index, job)

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

    def _build(self, index: PartitionIndex, job: BuildJob) -> None:
        started, count = time.perf_counter(), len(index)
        logger.info("index rebuild of %d vectors (%s) started", count, index.kind)
        try:
            built = job()
        except Exception as exc:
            logger.error("an index rebuild failed: %s", type(exc).__name__, exc_info=exc)
            self._put_quietly(_Call(index, PartitionIndex.abandon_rebuild))
            return
        logger.info(
            "index rebuild of %d vectors done in %.1f s: %s",
            count,
            time.perf_counter() - started,
            built.kind,
        )
        self.rebuilds += 1
        self._put_quietly(_Call(index, lambda ix: ix.finish_rebuild(built)))

    def _put_quietly(self, work: _Work) -> None:
        try:
            self._put(work)
        except RuntimeError:  # closed meanwhile: the index goes with the process
            return


def _no_edit(index: PartitionIndex) -> None:
    return None


class _PendingEdits:
    """Adds and removes collected per index, in the order the indexes were first touched."""

    def __init__(self) -> None:
        self._by_index: dict[int, tuple[PartitionIndex, list[_Add], list[int]]] = {}

    def collect(self, work: _Add | _Remove) -> None:
        _, adds, removes = self._by_index.setdefault(id(work.index), (work.index, [], []))
        if isinstance(work, _Add):
            adds.append(work)
        else:
            removes.extend(work.entry_ids)

    def drain(self) -> list[tuple[PartitionIndex, list[_Add], list[int]]]:
        drained, self._by_index = list(self._by_index.values()), {}
        return drained


def _add_all(index: PartitionIndex, adds: list[_Add]) -> None:
    try:
        index.add_many([a.entry_id for a in adds], np.stack([a.vector.reshape(-1) for a in adds]))
    except ValueError:  # a vector of the wrong size: add the others one by one
        for add in adds:
            try:
                index.add(add.entry_id, add.vector)
            except ValueError as exc:
                logger.error("an index add failed: %s", exc)


def _same_search(work: _Work, first: _Search) -> bool:
    return isinstance(work, _Search) and work.index is first.index and work.k == first.k


def _settle(read: _Read) -> None:
    if not read.result.set_running_or_notify_cancel():
        return
    try:
        read.result.set_result(read.index.vectors_of(read.entry_ids))
    except Exception as exc:
        read.result.set_exception(exc)

"""Micro-batching: concurrent requests share one forward pass, run off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

from cache_proxy.embedding.base import Embedder, Vectors

_Pending = tuple[str, "asyncio.Future[Vectors]"]


class MicroBatcher:
    """Encodes the texts that queued up while the model was busy together, up to
    `max_batch_size`, optionally waiting `max_wait_ms` for more."""

    def __init__(self, embedder: Embedder, max_batch_size: int = 32, max_wait_ms: float = 0.0):
        self._embedder = embedder
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        # One thread: the model is not re-entrant and torch already uses the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._worker: asyncio.Task[None] | None = None

    @property
    def dimension(self) -> int:
        return self._embedder.dimension

    def fits(self, text: str) -> bool:
        return self._embedder.fits(text)

    async def embed(self, text: str) -> Vectors:
        """One normalised vector, shape (dimension,)."""
        self._ensure_worker()
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        await self._queue.put((text, future))
        return await future

    async def _encode(self, texts: list[str]) -> Vectors:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._embedder.encode, texts)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            live = [(text, fut) for text, fut in batch if not fut.done()]
            if not live:
                continue
            try:
                vectors = await self._encode([text for text, _ in live])
            except Exception as exc:  # handed to every waiter, who maps it to an error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for row, (_, fut) in enumerate(live):
                if not fut.done():
                    fut.set_result(vectors[row])

    async def _collect(self) -> list[_Pending]:
        # Whatever queued up while the previous batch ran goes together ("natural" batching:
        # no added latency when idle); an optional extra wait trades latency for bigger batches.
        batch = [await self._queue.get()]
        while len(batch) < self._max_batch_size and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while len(batch) < self._max_batch_size:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

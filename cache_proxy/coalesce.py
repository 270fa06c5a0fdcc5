"""Single flight: one upstream call per in-flight key; every identical request subscribes to it.

The upstream call runs in its own task, not in any client's request, so the first client
leaving does not cut the answer for the others. When the last subscriber leaves before the
answer is complete, the call is cancelled (nothing partial is stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

from cache_proxy.errors import ProxyError, UpstreamBadGateway
from cache_proxy.store.entry import Answer
from cache_proxy.upstream import SseChunk

logger = logging.getLogger(__name__)


class Flight:
    def __init__(self, streaming: bool = True) -> None:
        self.streaming = streaming  # False: one JSON answer at the end, no chunks
        self.chunks: list[SseChunk] = []
        self.answer: Answer | None = None
        self.error: ProxyError | None = None
        self.started = False
        self.remote = False  # answered by another replica's engine call (shared tier)
        self.subscribers = 0
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self.answer is not None or self.error is not None

    def mark_started(self) -> None:
        self.started = True
        self._notify()

    def publish(self, chunk: SseChunk) -> None:
        self.chunks.append(chunk)
        self._notify()

    def finish(self, answer: Answer, remote: bool = False) -> None:
        self.answer = answer
        self.remote = remote
        self._notify()

    def fail(self, error: ProxyError) -> None:
        self.error = error
        self._notify()

    async def wait_started(self) -> None:
        """Returns once the engine accepted the request; raises if it did not."""
        while not (self.started or self.done):
            await self._next_change()
        if self.error is not None and not self.started:
            raise self.error

    async def result(self) -> Answer:
        while not self.done:
            await self._next_change()
        if self.error is not None:
            raise self.error
        assert self.answer is not None
        return self.answer

    async def iter_chunks(self) -> AsyncIterator[SseChunk]:
        position = 0
        while True:
            while position < len(self.chunks):
                yield self.chunks[position]
                position += 1
            if self.done:
                if self.error is not None:
                    raise self.error
                return
            await self._next_change()

    async def _next_change(self) -> None:
        await self._wake.wait()

    def _notify(self) -> None:
        # Wake everyone waiting now; later waiters wait for the next change.
        self._wake.set()
        self._wake = asyncio.Event()


FlightRunner = Callable[[Flight], Awaitable[None]]


class Coalescer:
    def __init__(self) -> None:
        self._flights: dict[Hashable, Flight] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(
        self, key: Hashable, runner: FlightRunner, streaming: bool = True
    ) -> tuple[Flight, bool]:
        """The flight for `key` (started now if none) and whether this caller started it."""
        flight = self._flights.get(key)
        if flight is not None:
            flight.subscribers += 1
            return flight, False
        flight = Flight(streaming)
        flight.subscribers = 1
        self._flights[key] = flight
        flight.task = asyncio.get_running_loop().create_task(self._run(key, flight, runner))
        return flight, True

    def leave(self, key: Hashable, flight: Flight) -> None:
        flight.subscribers -= 1
        if flight.subscribers > 0 or flight.done:
            return
        # Nobody is listening: stop the engine's work; the partial answer is dropped.
        if self._flights.get(key) is flight:
            del self._flights[key]
        if flight.task is not None:
            flight.task.cancel()

    async def _run(self, key: Hashable, flight: Flight, runner: FlightRunner) -> None:
        try:
            await runner(flight)
            if not flight.done:
                flight.fail(UpstreamBadGateway("The engine gave no answer."))
        except ProxyError as exc:
            flight.fail(exc)
        except asyncio.CancelledError:
            flight.fail(UpstreamBadGateway("The request was abandoned by every client."))
            raise
        except Exception as exc:  # a bug must not leave subscribers waiting forever
            logger.exception("upstream flight failed")
            flight.fail(
                ProxyError(f"Internal error while calling the engine: {type(exc).__name__}")
            )
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def aclose(self) -> None:
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

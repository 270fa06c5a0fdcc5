"""Event-loop lag probes: how late a 20 Hz tick fires, in this loop or over HTTP."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx

TICK_S = 0.05  # 20 Hz


def lag_summary(samples_ms: list[float]) -> tuple[float, float]:
    """(p99, max) in ms; (0, 0) without samples."""
    if not samples_ms:
        return 0.0, 0.0
    ordered = sorted(samples_ms)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], ordered[-1]


class LoopLagProbe:
    """A task in this loop that sleeps one tick at a time and records how late it woke."""

    def __init__(self) -> None:
        self._samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def take(self) -> list[float]:
        samples, self._samples = self._samples, []
        return samples

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + TICK_S
            await asyncio.sleep(TICK_S)
            self._samples.append(1000 * max(0.0, time.perf_counter() - due))


class HealthzProbe:
    """A thread that GETs /healthz at 20 Hz and records each response time (the server's
    loop lag plus a loopback round trip); refused connections (not listening yet) are skipped."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthzProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def take(self) -> list[float]:
        samples, self._samples = self._samples, []
        return samples

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    client.get(self._url)
                    self._samples.append(1000 * (time.perf_counter() - started))
                except httpx.TransportError:
                    pass
                self._stop.wait(max(0.0, TICK_S - (time.perf_counter() - started)))

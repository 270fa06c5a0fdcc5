"""Bounded waits on a condition, for tests.

A test that must see that something did NOT happen first waits here for the event that ends
the work in question (the flight finished, the counter reached its final value), then asserts
the absence: a fixed sleep passes vacuously on a slow machine and wastes time on a fast one.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    timeout_s: float = 10.0,
    what: str | None = None,
    interval_s: float = 0.01,
) -> None:
    """Returns once `predicate()` is true (awaited when it returns an awaitable); fails,
    naming `what`, when it is still false after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() >= deadline:
            raise AssertionError(_timed_out(predicate, timeout_s, what))
        await asyncio.sleep(interval_s)


def wait_until_sync(
    predicate: Callable[[], bool],
    timeout_s: float = 10.0,
    what: str | None = None,
    interval_s: float = 0.02,
) -> None:
    """The blocking `wait_until`, for tests that drive real servers from plain threads."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(_timed_out(predicate, timeout_s, what))
        time.sleep(interval_s)


def _timed_out(predicate: Callable[..., object], timeout_s: float, what: str | None) -> str:
    if what is None:  # name the condition by where it is written
        code = getattr(predicate, "__code__", None)
        where = f"{Path(code.co_filename).name}:{code.co_firstlineno}" if code else "?"
        what = f"the condition at {where}"
    return f"timed out after {timeout_s:g} s waiting for {what}"

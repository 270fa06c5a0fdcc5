from __future__ import annotations

import asyncio

from cache_proxy.coalesce import Coalescer, Flight
from cache_proxy.errors import UpstreamTimeout
from cache_proxy.store import Answer
from cache_proxy.upstream import SseChunk

ANSWER = Answer("completion", "m", "done", "stop")


async def test_followers_share_the_leaders_flight() -> None:
    coalescer, runs = Coalescer(), []

    async def run(flight: Flight) -> None:
        runs.append(1)
        flight.mark_started()
        await asyncio.sleep(0.01)
        flight.publish(SseChunk({"n": 1}, b'data: {"n": 1}\n\n'))
        flight.finish(ANSWER)

    first, leader = coalescer.join("k", run)
    second, follower_leads = coalescer.join("k", run)
    assert first is second and leader and not follower_leads
    assert await second.result() == ANSWER
    assert [c.data async for c in first.iter_chunks()] == [{"n": 1}]
    assert runs == [1] and len(coalescer) == 0


async def test_errors_reach_every_subscriber() -> None:
    coalescer = Coalescer()

    async def run(flight: Flight) -> None:
        raise UpstreamTimeout("slow")

    flight, _ = coalescer.join("k", run)
    coalescer.join("k", run)
    for _ in range(2):
        try:
            await flight.result()
        except UpstreamTimeout:
            continue
        raise AssertionError("the error was not raised")


async def test_last_subscriber_leaving_cancels_the_upstream_call() -> None:
    coalescer, running, cancelled = Coalescer(), asyncio.Event(), asyncio.Event()

    async def run(flight: Flight) -> None:
        running.set()
        try:
            await asyncio.sleep(10)  # an engine call that only ends when cancelled
        except asyncio.CancelledError:
            cancelled.set()
            raise

    flight, _ = coalescer.join("k", run)
    coalescer.join("k", run)
    await asyncio.wait_for(running.wait(), 1)  # the upstream call is under way
    coalescer.leave("k", flight)
    # A cancel would be requested right in leave(); `cancelled` is only set a loop turn later.
    assert flight.task is not None and not flight.task.cancelling()
    assert not cancelled.is_set()
    coalescer.leave("k", flight)
    await asyncio.wait_for(cancelled.wait(), 1)
    assert len(coalescer) == 0

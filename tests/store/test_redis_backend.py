"""The Redis backend against a real redis-server: replicas share entries through the change
log, invalidations reach every mirror, tenants and cache spaces stay apart, TTL and the
entry bound hold in Redis and in the mirrors, a new replica rebuilds, and Redis going away
degrades to misses instead of errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import numpy as np
import pytest

from cache_proxy.config import CacheSettings, RedisSettings
from cache_proxy.metrics import Metrics
from cache_proxy.store import Answer, CacheSpace, NoLease, StoredEntry
from cache_proxy.store.redis_backend import RedisBackend
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

DIM = 8
SPACE = CacheSpace("embedder-a", DIM, "rev-1")


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def entry(i: int, ttl_s: float | None = None, model: str = "m") -> StoredEntry:
    now = time.time()
    return StoredEntry(
        partition="p",
        exact=f"exact-{i}",
        query_text=f"question {i}",
        answer=Answer("chat", model, f"answer {i}", "stop"),
        vector=unit(i),
        created_at=now,
        expires_at=None if ttl_s is None else now + ttl_s,
    )


def settings(url: str, prefix: str, **cache: object) -> CacheSettings:
    redis = RedisSettings(url=url, key_prefix=prefix, timeout_s=0.5, lease_s=2)
    return CacheSettings(backend="redis", redis=redis, sweep_interval_s=0.2, **cache)  # type: ignore[arg-type]


@pytest.fixture
def replica(redis_server: RedisServer, redis_prefix: str) -> Callable[..., object]:
    @asynccontextmanager
    async def make(
        tenants: tuple[str, ...] = ("acme",),
        space: CacheSpace = SPACE,
        url: str | None = None,
        ready: bool = True,
        **cache: object,
    ) -> AsyncIterator[RedisBackend]:
        backend = RedisBackend(
            settings(url or redis_server.url, redis_prefix, **cache), space, Metrics()
        )
        backend.set_tenants(list(tenants))
        await backend.start()
        try:
            if ready:
                await wait_until(lambda: not backend.follower.rebuilding)
            yield backend
        finally:
            await backend.aclose()

    return make


@contextmanager
def own_redis(tmp_path: Path, persistent: bool = True) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop and start."""
    server = RedisServer(tmp_path / "redis", persistent=persistent).start()
    try:
        yield server
    finally:
        server.stop()


async def put(backend: RedisBackend, tenant: str, stored: StoredEntry) -> bool:
    return await backend.put(tenant, stored, backend.generation(tenant))


async def test_an_entry_stored_through_one_replica_is_found_by_another(replica) -> None:  # type: ignore[no-untyped-def]
    async with replica() as a, replica() as b:
        assert await put(a, "acme", entry(1))
        assert a.tenant("acme").peek_exact("exact-1") is not None  # the writer sees it at once
        await wait_until(lambda: b.tenant("acme").peek_exact("exact-1") is not None)
        hits = await b.tenant("acme").search("p", unit(1), 2)
        assert hits[0].entry.answer.content == "answer 1"
        assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)


async def test_invalidate_and_flush_through_one_replica_reach_the_other(replica) -> None:  # type: ignore[no-untyped-def]
    async with replica() as a, replica() as b:
        for i in range(3):
            await put(a, "acme", entry(i, model="old" if i < 2 else "new"))
        await wait_until(lambda: len(b.tenant("acme")) == 3)
        assert await b.invalidate("acme", model="old") == 2
        await wait_until(lambda: len(a.tenant("acme")) == 1)
        assert a.tenant("acme").peek_exact("exact-2") is not None
        assert await a.remove_entry("acme", "exact-2") == 1
        await wait_until(lambda: len(b.tenant("acme")) == 0)
        await put(b, "acme", entry(5))
        assert await a.invalidate() == 1  # flush: every tenant
        await wait_until(lambda: len(b.tenant("acme")) == 0 and len(a.tenant("acme")) == 0)


async def test_a_store_begun_before_an_invalidation_is_refused(replica) -> None:  # type: ignore[no-untyped-def]
    async with replica() as a, replica() as b:
        generation = a.generation("acme")
        await b.invalidate("acme")
        assert not await a.put("acme", entry(1), generation)
        assert a.tenant("acme").peek_exact("exact-1") is None
        await wait_until(lambda: a.generation("acme") != generation)
        assert await put(a, "acme", entry(1))


async def test_tenants_are_apart_in_redis_and_in_every_mirror(  # type: ignore[no-untyped-def]
    replica, redis_server: RedisServer, redis_prefix: str
) -> None:
    async with replica(("acme", "globex")) as a, replica(("acme", "globex")) as b:
        await put(a, "acme", entry(1))
        await wait_until(lambda: b.tenant("acme").peek_exact("exact-1") is not None)
        assert b.tenant("globex").peek_exact("exact-1") is None
        assert await b.tenant("globex").search("p", unit(1), 4) == []
        assert await b.remove_entry("globex", "exact-1") == 0  # not reachable by key either
        raw_keys: list[bytes] = redis_server.client().keys(f"{redis_prefix}*")  # type: ignore[assignment]
        keys = [k.decode() for k in raw_keys]
        tenant_keys = [k for k in keys if not k.startswith(f"{redis_prefix}space:")]
        assert tenant_keys and all(k.startswith(f"{redis_prefix}{{acme}}:") for k in tenant_keys)
        assert len(keys) - len(tenant_keys) == 1  # what the space id stands for, no tenant data


async def test_another_cache_space_never_sees_the_entries(replica) -> None:  # type: ignore[no-untyped-def]
    new_engine = CacheSpace("embedder-a", DIM, "rev-2")
    async with replica() as old, replica(space=new_engine) as new:
        await put(old, "acme", entry(1))
        await put(new, "acme", entry(2))
        await wait_until(lambda: old.tenant("acme").peek_exact("exact-1") is not None)
        await wait_until(lambda: new.tenant("acme").peek_exact("exact-2") is not None)
        assert new.tenant("acme").peek_exact("exact-1") is None
        assert old.tenant("acme").peek_exact("exact-2") is None
        assert await new.invalidate("acme") == 2  # an admin flush drops the old space too


async def test_ttl_expires_in_redis_and_in_every_mirror(  # type: ignore[no-untyped-def]
    replica, redis_server: RedisServer, redis_prefix: str
) -> None:
    async with replica() as a, replica() as b:
        await put(a, "acme", entry(1, ttl_s=0.6))
        await put(a, "acme", entry(2))
        await wait_until(lambda: b.tenant("acme").peek_exact("exact-1") is not None)
        key = a.keys("acme").entry("exact-1")
        assert 0 < redis_server.client().pttl(key) <= 600
        await wait_until(lambda: b.tenant("acme").peek_exact("exact-1") is None)
        assert (await b.tenant("acme").search("p", unit(1), 1))[0].entry.exact == "exact-2"
        await wait_until(lambda: len(b.tenant("acme")) == 1 and len(a.tenant("acme")) == 1)
        lru = a.keys("acme").lru
        await wait_until(lambda: redis_server.client().zcard(lru) == 1)
        assert not redis_server.client().exists(key)


async def test_the_entry_bound_holds_in_redis_and_evictions_leave_every_mirror(  # type: ignore[no-untyped-def]
    replica, redis_server: RedisServer
) -> None:
    async with replica(max_entries=3) as a, replica(max_entries=3) as b:
        for i in range(5):
            await put(a, "acme", entry(i))
        await wait_until(lambda: b.tenant("acme").peek_exact("exact-4") is not None)
        assert redis_server.client().zcard(a.keys("acme").lru) == 3
        for mirror in (a, b):
            assert len(mirror.tenant("acme")) == 3
            assert mirror.tenant("acme").peek_exact("exact-0") is None


async def test_a_new_replica_rebuilds_its_mirror_from_redis(replica) -> None:  # type: ignore[no-untyped-def]
    async with replica() as a:
        for i in range(25):
            await put(a, "acme", entry(i))
    async with replica() as late:
        assert len(late.tenant("acme")) == 25
        assert (await late.tenant("acme").search("p", unit(7), 1))[0].entry.exact == "exact-7"


async def test_one_replica_leads_a_miss_and_the_other_gets_its_answer(replica) -> None:  # type: ignore[no-untyped-def]
    async with replica() as a, replica() as b:
        lease = await a.lead("acme", "exact-1")
        assert lease is not None and not isinstance(lease, NoLease)
        assert await b.lead("acme", "exact-1") is None
        waiting = asyncio.create_task(b.await_remote("acme", "exact-1"))
        await put(a, "acme", entry(1))
        await lease.release()
        found = await asyncio.wait_for(waiting, 5)
        assert found is not None and found.answer.content == "answer 1"


async def test_a_leader_that_gives_up_releases_the_followers_at_once(replica) -> None:  # type: ignore[no-untyped-def]
    async with replica() as a, replica() as b:  # b would wait 60 s (coalesce_wait_s)
        lease = await a.lead("acme", "exact-9")
        assert lease is not None
        waiting = asyncio.create_task(b.await_remote("acme", "exact-9"))
        await lease.release()  # e.g. the engine failed: nothing stored
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, 5) is None
        assert time.monotonic() - started < 2
        assert await b.lead("acme", "exact-9") is not None


async def test_redis_down_degrades_and_recovers_by_itself(  # type: ignore[no-untyped-def]
    replica, tmp_path: Path
) -> None:
    with own_redis(tmp_path) as server:
        async with replica(url=server.url) as a:
            await put(a, "acme", entry(1))
            server.stop()
            started = time.monotonic()
            assert not await put(a, "acme", entry(2))
            assert time.monotonic() - started < 1.5  # bounded by the configured timeout
            assert a.health()["state"] == "degraded"
            assert isinstance(await a.lead("acme", "exact-3"), NoLease)
            assert a.tenant("acme").peek_exact("exact-1") is not None  # hits still served
            server.start()
            await wait_until(lambda: a.health()["state"] == "ok" and not a.follower.rebuilding)
            assert await put(a, "acme", entry(2))
            assert a.tenant("acme").peek_exact("exact-1") is not None  # kept by Redis (AOF)


async def test_every_store_lands_once_redis_is_back(  # type: ignore[no-untyped-def]
    replica, tmp_path: Path
) -> None:
    """Connections pooled before an outage are dead after it; none may cost a store."""
    with own_redis(tmp_path) as server:
        async with replica(url=server.url) as a:
            assert all(await asyncio.gather(*(put(a, "acme", entry(i)) for i in range(8))))
            server.stop()
            assert not await put(a, "acme", entry(8))
            server.start()
            await wait_until(lambda: a.health()["state"] == "ok" and not a.follower.rebuilding)
            stored = await asyncio.gather(*(put(a, "acme", entry(i)) for i in range(10, 18)))
            assert stored == [True] * 8
            assert a.health()["state"] == "ok"


async def test_a_redis_that_comes_back_empty_empties_every_mirror(  # type: ignore[no-untyped-def]
    replica, tmp_path: Path
) -> None:
    """A cache-only Redis (no persistence) restarted: the mirrors follow it, none keeps serving
    what the shared tier lost, and stores work again at once."""
    with own_redis(tmp_path, persistent=False) as server:
        async with replica(url=server.url) as a, replica(url=server.url) as b:
            assert await put(a, "acme", entry(1))
            await wait_until(lambda: b.tenant("acme").peek_exact("exact-1") is not None)
            server.stop()
            server.start()
            for mirror in (a, b):
                await wait_until(
                    lambda m=mirror: (
                        m.health()["state"] == "ok"  # type: ignore[misc]
                        and not m.follower.rebuilding
                        and m.tenant("acme").peek_exact("exact-1") is None
                    )
                )
            assert await put(a, "acme", entry(2))
            await wait_until(lambda: b.tenant("acme").peek_exact("exact-2") is not None)


def mirror_count(backend: RedisBackend, what: str, tenant: str = "acme") -> float:
    """cache_proxy_mirror_{rebuilds,resumes}_total of one tenant on one replica."""
    registry = backend._metrics.registry
    return registry.get_sample_value(f"cache_proxy_mirror_{what}_total", {"tenant": tenant}) or 0


async def test_after_a_restart_that_kept_the_data_the_mirror_resumes_its_log(  # type: ignore[no-untyped-def]
    replica, tmp_path: Path
) -> None:
    """No replica reads every entry again after a blip: the log still holds its last event."""
    with own_redis(tmp_path) as server:
        async with replica(url=server.url) as a, replica(url=server.url) as b:
            assert await put(a, "acme", entry(1))
            await wait_until(lambda: b.tenant("acme").peek_exact("exact-1") is not None)
            server.stop()
            assert not await put(a, "acme", entry(2))  # a notices the outage
            server.start()
            await wait_until(lambda: a.health()["state"] == "ok" and not a.follower.rebuilding)
            assert mirror_count(a, "rebuilds") == 1 and mirror_count(a, "resumes") >= 1
            assert a.tenant("acme").peek_exact("exact-1") is not None
            assert await put(b, "acme", entry(3))  # changes after the outage are followed
            await wait_until(lambda: a.tenant("acme").peek_exact("exact-3") is not None)


async def test_a_log_trimmed_past_the_last_event_applied_is_rebuilt_from(  # type: ignore[no-untyped-def]
    replica, redis_server: RedisServer
) -> None:
    async with replica() as a:
        assert await put(a, "acme", entry(1))
        assert await put(a, "acme", entry(2))
        redis_server.client().xtrim(a.keys("acme").log, maxlen=0)  # as MAXLEN does, oldest first
        a.follower.mark_all_suspect()  # what an outage does
        await wait_until(lambda: mirror_count(a, "rebuilds") == 2 and not a.follower.rebuilding)
        assert mirror_count(a, "resumes") == 0
        assert a.tenant("acme").peek_exact("exact-2") is not None  # read back from the entries


async def test_shadow_verdicts_are_shared_so_every_replica_tightens(  # type: ignore[no-untyped-def]
    replica, embedder
) -> None:
    from cache_proxy.config import UpstreamSettings
    from cache_proxy.embedding import MicroBatcher
    from cache_proxy.shadow import MIN_VERDICTS, ShadowChecker
    from cache_proxy.upstream import Upstream

    async with replica() as a, replica() as b:
        checkers = []
        for backend in (a, b):
            upstream = Upstream(UpstreamSettings(url="http://127.0.0.1:9"))
            checker = ShadowChecker(upstream, MicroBatcher(embedder), Metrics())
            checker.share_through(backend, lambda: ["acme"])
            checkers.append((checker, upstream))
        seen_by_a, seen_by_b = checkers[0][0], checkers[1][0]
        for _ in range(MIN_VERDICTS + 10):  # replica A's traffic: suspect hits at 0.93
            seen_by_a.record("acme", 0.93, True)
        assert seen_by_b.threshold("acme", 0.9, 0.05) == 0.9  # B has not seen them yet

        async def b_tightened() -> bool:
            await seen_by_b.refresh_shared(["acme"])
            return seen_by_b.threshold("acme", 0.9, 0.05) != 0.9

        await wait_until(b_tightened, 5, "B to see A's verdicts", interval_s=0.02)
        assert seen_by_b.threshold("acme", 0.9, 0.05) > 0.93
        for checker, upstream in checkers:
            await checker.aclose()
            await upstream.aclose()


async def test_tls_and_a_password_in_the_url(replica, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path / "tls", password="s3cret", tls=True).start()
    try:
        assert server.url.startswith("rediss://:s3cret@")
        async with replica(url=server.url) as a, replica(url=server.url) as b:
            assert await put(a, "acme", entry(1))
            await wait_until(lambda: b.tenant("acme").peek_exact("exact-1") is not None)
            assert "s3cret" not in json.dumps(a.health())
        wrong = server.url.replace("s3cret", "wrong")
        async with replica(
            url=wrong, ready=False
        ) as refused:  # never an error to a client: degraded
            await wait_until(lambda: refused.health()["state"] == "degraded")
            assert not await put(refused, "acme", entry(2))
    finally:
        server.stop()


async def test_online_verdicts_are_shared_and_outlive_a_restart(replica) -> None:  # type: ignore[no-untyped-def]
    from cache_proxy.explore import Explorer
    from cache_proxy.store import OnlineVerdict
    from cache_proxy.verify.policy import OnlineVerifyPolicy

    def judge_for(config: OnlineVerifyPolicy) -> None:
        raise AssertionError("no judging here")

    config = OnlineVerifyPolicy(enabled=True, max_error=0.05)
    tenants = [("acme", config)]
    async with replica() as a, replica() as b:
        seen_by_a, seen_by_b = (Explorer(judge_for, Metrics()) for _ in range(2))  # type: ignore[arg-type]
        seen_by_a.share_through(a, lambda: [])
        seen_by_b.share_through(b, lambda: [])
        for i in range(100):  # replica A's explorations: right at 0.85
            await seen_by_a.add_verdict("acme", OnlineVerdict(0.85, True, f"e{i}"), config)
        assert seen_by_b.report("acme", config)["boundary"] == 1.0
        await seen_by_b.follow_shared(tenants)
        assert seen_by_b.report("acme", config)["verdicts_in_window"] == 100
        assert seen_by_b.report("acme", config)["boundary"] == 0.85
        await seen_by_a.follow_shared(tenants)  # its own verdicts are not counted twice
        assert seen_by_a.report("acme", config)["verdicts_in_window"] == 100
        await seen_by_b.follow_shared([("globex", config)])
        assert seen_by_b.report("globex", config)["verdicts_in_window"] == 0
        for explorer in (seen_by_a, seen_by_b):
            await explorer.aclose()
    async with replica() as restarted:
        fresh = Explorer(judge_for, Metrics())  # type: ignore[arg-type]
        fresh.share_through(restarted, lambda: [])
        await fresh.follow_shared(tenants)
        assert fresh.report("acme", config)["verdicts_in_window"] == 100
        await fresh.aclose()

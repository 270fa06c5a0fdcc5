"""The embedded backend: snapshot at shutdown and every interval, loaded at start, refused
when of another cache space or broken; expiry sweeping; stale stores refused."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from cache_proxy.config import CacheSettings
from cache_proxy.store import Answer, CacheSpace, StoredEntry
from cache_proxy.store.embedded import EmbeddedBackend
from cache_proxy.store.snapshot import SnapshotError, read_snapshot, write_snapshot
from tests.support.waiting import wait_until

DIM = 8
SPACE = CacheSpace(embedder_digest="0123456789abcdef", dimension=DIM, engine_revision="rev-1")
LOGGER = "cache_proxy.store.embedded"


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def stored(
    n: int, expires_at: float | None = None, usage: dict[str, int] | None = None
) -> StoredEntry:
    return StoredEntry(
        partition="p",
        exact=f"exact-{n}",
        query_text=f"query {n}",
        answer=Answer("chat", "tiny", f"answer {n}", "stop", usage or {"completion_tokens": n}),
        vector=unit(n),
        created_at=time.time(),
        expires_at=expires_at,
    )


def settings(path: Path, **overrides: float) -> CacheSettings:
    values = {"snapshot_interval_s": 60.0, "sweep_interval_s": 60.0, **overrides}
    return CacheSettings(snapshot_path=str(path), **values)  # type: ignore[arg-type]


@asynccontextmanager
async def running(
    cache: CacheSettings, space: CacheSpace = SPACE, tenants: list[str] | None = None
) -> AsyncIterator[EmbeddedBackend]:
    backend = EmbeddedBackend(cache, space)
    if tenants is not None:
        backend.set_tenants(tenants)
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


async def fill(backend: EmbeddedBackend) -> None:
    for tenant, numbers in (("acme", (1, 2, 3)), ("globex", (4, 5))):
        for n in numbers:
            assert await backend.put(tenant, stored(n), backend.generation(tenant))


def snapshot_holds(path: Path, exacts: set[str]) -> bool:
    try:
        records = read_snapshot(path, SPACE.space_id, DIM)
    except SnapshotError:
        return False
    return exacts <= {entry.exact for _, entry in records}


async def test_entries_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    async with running(settings(path)) as first:
        await fill(first)
        created = first.tenant("acme").peek_exact("exact-2").created_at  # type: ignore[union-attr]
    assert path.exists()
    async with running(settings(path)) as second:
        assert sorted(second.tenant_names()) == ["acme", "globex"]
        assert len(second.tenant("acme")) == 3 and len(second.tenant("globex")) == 2
        hits = await second.tenant("acme").search("p", unit(2), 1)
        assert hits and hits[0].entry.exact == "exact-2"
        assert hits[0].similarity == pytest.approx(1.0, abs=1e-5)
        want = Answer("chat", "tiny", "answer 2", "stop", {"completion_tokens": 2})
        assert hits[0].entry.answer == want
        assert hits[0].entry.created_at == created
        assert second.tenant("globex").get_exact("exact-4") is not None
        assert (await second.tenant("globex").search("p", unit(2), 5))[0].entry.exact != "exact-2"
        assert second.tenant("acme").get_exact("exact-4") is None  # tenants stay apart
        assert "snapshot_error" not in second.health()


async def test_loaded_entries_keep_their_expiry(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    expires = time.time() + 3600
    async with running(settings(path)) as first:
        assert await first.put("acme", stored(1, expires_at=expires), first.generation("acme"))
    async with running(settings(path)) as second:
        assert second.tenant("acme").peek_exact("exact-1").expires_at == expires  # type: ignore[union-attr]


async def test_snapshot_of_another_engine_revision_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.snapshot"
    async with running(settings(path)) as first:
        await fill(first)
    other = CacheSpace(SPACE.embedder_digest, DIM, engine_revision="rev-2")
    assert other.space_id != SPACE.space_id
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with running(settings(path), space=other) as second:
            assert second.tenant_names() == []
            assert await second.tenant("acme").search("p", unit(2), 1) == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "ignored" in message and SPACE.space_id in message and other.space_id in message


async def test_corrupt_snapshot_starts_empty_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.snapshot"
    async with running(settings(path)) as first:
        await fill(first)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with running(settings(path)) as second:
            assert second.tenant_names() == []
            assert await second.put("acme", stored(9), second.generation("acme"))  # still usable
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == LOGGER]
    assert len(warnings) == 1 and "ignored" in warnings[0].getMessage()
    assert snapshot_holds(path, {"exact-9"})  # the next save replaced the broken file


async def test_no_snapshot_yet_starts_empty_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "sub" / "cache.snapshot"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with running(settings(path)) as backend:
            assert backend.tenant_names() == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert path.exists() and read_snapshot(path, SPACE.space_id, DIM) == []


async def test_expired_entries_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    now = time.time()
    write_snapshot(
        path,
        SPACE.space_id,
        [
            ("acme", stored(1, expires_at=now - 1)),
            ("acme", stored(2, expires_at=now + 3600)),
            ("acme", stored(3)),
            ("globex", stored(4, expires_at=now - 100)),
        ],
    )
    async with running(settings(path)) as backend:
        assert {e.exact for e in backend.tenant("acme").entries()} == {"exact-2", "exact-3"}
        assert "globex" not in backend.tenant_names()  # nothing live: no cache at all


async def test_expired_entries_are_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    async with running(settings(path)) as backend:
        generation = backend.generation("acme")
        assert await backend.put("acme", stored(1, expires_at=time.time() - 1), generation)
        assert await backend.put("acme", stored(2), generation)
    exacts = {e.exact for _, e in read_snapshot(path, SPACE.space_id, DIM)}
    assert exacts == {"exact-2"}


async def test_tenants_no_longer_configured_are_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    async with running(settings(path)) as first:
        await fill(first)
    async with running(settings(path), tenants=["acme", "initech"]) as second:
        assert second.tenant_names() == ["acme"]
        assert len(second.tenant("acme")) == 3
        assert second.tenant("globex").get_exact("exact-4") is None


async def test_put_with_a_stale_generation_is_refused(tmp_path: Path) -> None:
    async with running(settings(tmp_path / "cache.snapshot")) as backend:
        before = backend.generation("acme")
        assert await backend.put("acme", stored(1), before)
        assert await backend.invalidate(tenant="acme") == 1
        assert backend.generation("acme") != before
        assert not await backend.put("acme", stored(2), before)  # fetched before the flush
        assert len(backend.tenant("acme")) == 0
        assert await backend.put("acme", stored(3), backend.generation("acme"))
        assert backend.tenant("acme").get_exact("exact-3") is not None


async def test_snapshot_is_written_periodically(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    async with running(settings(path, snapshot_interval_s=0.2)) as backend:
        await fill(backend)
        await wait_until(
            lambda: snapshot_holds(path, {f"exact-{n}" for n in range(1, 6)}), 5, "a snapshot"
        )
        assert await backend.put("acme", stored(6), backend.generation("acme"))
        await wait_until(  # and again, not just once
            lambda: snapshot_holds(path, {"exact-6"}), 5, "a second snapshot"
        )


async def test_expired_entries_are_swept_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    async with running(settings(path, sweep_interval_s=0.05)) as backend:
        cache = backend.tenant("acme")
        generation = backend.generation("acme")
        assert await backend.put("acme", stored(1, expires_at=time.time() + 0.3), generation)
        assert await backend.put("acme", stored(2), generation)
        assert len(cache) == 2
        # len() itself drops nothing: the sweeper did
        await wait_until(lambda: len(cache) == 1, 5, "the sweeper to drop the expired entry")
        assert [e.exact for e in cache.entries()] == ["exact-2"]


async def test_without_a_snapshot_path_the_backend_still_works() -> None:
    backend = EmbeddedBackend(CacheSettings(sweep_interval_s=60.0), SPACE)
    await backend.start()
    try:
        assert await backend.put("acme", stored(1), backend.generation("acme"))
    finally:
        await backend.aclose()
    assert backend.health() == {"backend": "embedded", "state": "ok"}


async def test_online_verdicts_survive_a_restart_beside_the_snapshot(tmp_path: Path) -> None:
    from cache_proxy.store import OnlineVerdict
    from cache_proxy.store.verdict_file import verdict_path

    path = tmp_path / "cache.snapshot"
    learned = [OnlineVerdict(0.9 + i / 1000, i % 7 != 0, f"exact-{i}", 0.05) for i in range(50)]
    async with running(settings(path)) as first:
        log = first.exploration_log()
        assert log is not None
        for verdict in learned:
            await log.add_online_verdict("acme", verdict)
        assert await log.online_verdicts_after("acme", "") == ([], "restored")  # nothing older
    assert verdict_path(path).exists()
    async with running(settings(path)) as second:
        log = second.exploration_log()
        assert log is not None
        assert await log.online_verdicts_after("acme", "") == (learned, "restored")
        assert await log.online_verdicts_after("acme", "restored") == ([], "restored")
        assert await log.online_verdicts_after("globex", "") == ([], "restored")
    async with running(settings(path)) as third:  # kept again by the second's snapshot
        assert (await third.exploration_log().online_verdicts_after("acme", ""))[0] == learned  # type: ignore[union-attr]


async def test_online_verdicts_of_another_cache_space_are_ignored(tmp_path: Path) -> None:
    from cache_proxy.store import OnlineVerdict

    path = tmp_path / "cache.snapshot"
    async with running(settings(path)) as first:
        await first.exploration_log().add_online_verdict(  # type: ignore[union-attr]
            "acme", OnlineVerdict(0.9, True, "exact-1", 0.1)
        )
    other = CacheSpace(SPACE.embedder_digest, DIM, engine_revision="rev-2")
    async with running(settings(path), space=other) as second:
        assert await second.exploration_log().online_verdicts_after("acme", "") == ([], "restored")  # type: ignore[union-attr]


async def test_without_a_snapshot_online_verdicts_stay_in_the_process() -> None:
    async with running(CacheSettings()) as backend:
        assert backend.exploration_log() is None

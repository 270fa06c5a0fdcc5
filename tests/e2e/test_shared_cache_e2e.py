"""Two real proxy processes (`cache-proxy serve`, real MiniLM and FAISS) on one real
redis-server, with the scripted engine for counting calls: one cache for the deployment."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import proxy_process
from tests.support.redis_server import RedisServer
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.servers import serve_in_thread
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e
ADMIN = {"authorization": "Bearer admin-shared"}
NO_STORE = {"cache-control": "no-store"}  # a MISS then stores nothing: a HIT can only be shared


@dataclass
class Deployment:
    a: str
    b: str
    upstream: ScriptedUpstream
    redis: RedisServer
    config: dict[str, Any]


def shared_config(upstream_url: str, redis_url: str, prefix: str = "e2e:") -> dict[str, Any]:
    return {
        "upstream": {"url": upstream_url, "read_timeout_s": 20, "revision": "rev-1"},
        "admin": {"token": "admin-shared"},
        "cache": {
            "backend": "redis",
            "sweep_interval_s": 0.2,
            "redis": {"url": redis_url, "key_prefix": prefix, "timeout_s": 0.3, "lease_s": 2},
        },
        "tenants": {
            "acme": {"api_keys": ["sk-acme-1"], "threshold": 0.9},
            "brief": {"api_keys": ["sk-brief-1"], "threshold": 0.9, "ttl_s": 1.5},
        },
    }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    redis = RedisServer(tmp_path_factory.mktemp("redis")).start()
    upstream = ScriptedUpstream()
    try:
        with serve_in_thread(upstream.app) as upstream_url:
            config = shared_config(upstream_url, redis.url)
            with (
                proxy_process(config, tmp_path_factory.mktemp("a")) as a,
                proxy_process(config, tmp_path_factory.mktemp("b")) as b,
            ):
                yield Deployment(a, b, upstream, redis, config)
    finally:
        redis.stop()


def ask(url: str, text: str, key: str = "sk-acme-1", **headers: str) -> httpx.Response:
    body = {"model": "tiny", "messages": [{"role": "user", "content": text}]}
    auth = {"authorization": f"Bearer {key}", **headers}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=auth, timeout=30)


def content(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def hit_on(url: str, text: str, key: str = "sk-acme-1") -> bool:
    return ask(url, text, key, **NO_STORE).headers["x-cache"] == "HIT"


def test_a_miss_through_one_replica_is_a_hit_through_the_other(deployment: Deployment) -> None:
    before = deployment.upstream.completions_called
    miss = ask(deployment.a, "What is the capital city of Portugal?")
    assert miss.headers["x-cache"] == "MISS"
    wait_until_sync(lambda: hit_on(deployment.b, "What is the capital city of Portugal?"))
    hit = ask(deployment.b, "What is the capital city of Portugal?")
    assert content(hit) == content(miss)
    paraphrase = ask(deployment.b, "what's the capital city of Portugal?", **NO_STORE)
    assert paraphrase.headers["x-cache"] == "HIT"
    assert paraphrase.headers["x-cache-match"] == "semantic"
    assert (
        ask(deployment.b, "What is the capital city of Portugal?", "sk-brief-1").headers["x-cache"]
        == "MISS"
    )  # another tenant: never shared
    assert deployment.upstream.completions_called == before + 2


def test_invalidate_and_flush_through_one_replica_reach_the_other(deployment: Deployment) -> None:
    for text in ("How do I descale a kettle?", "How do I oil a squeaky hinge?"):
        ask(deployment.a, text)
        wait_until_sync(lambda t=text: hit_on(deployment.b, t))  # type: ignore[misc]
    removed = httpx.post(f"{deployment.b}/admin/invalidate", json={"tenant": "acme"}, headers=ADMIN)
    assert removed.status_code == 200 and removed.json()["removed"] >= 2
    assert not hit_on(deployment.a, "How do I descale a kettle?")
    ask(deployment.a, "How do I clean a cast iron pan?")
    wait_until_sync(lambda: hit_on(deployment.b, "How do I clean a cast iron pan?"))
    flushed = httpx.post(f"{deployment.b}/admin/flush", headers=ADMIN)
    assert flushed.status_code == 200 and flushed.json()["removed"] >= 1
    assert not hit_on(deployment.a, "How do I clean a cast iron pan?")
    stats = httpx.get(f"{deployment.a}/admin/stats", headers=ADMIN).json()
    assert stats["tenants"]["acme"]["entries"] == 0


def test_ttl_expires_on_every_replica(deployment: Deployment) -> None:
    stored_at = time.time()
    ask(deployment.a, "Which planet has the most moons?", "sk-brief-1")
    wait_until_sync(lambda: hit_on(deployment.b, "Which planet has the most moons?", "sk-brief-1"))
    wait_until_sync(lambda: time.time() > stored_at + 1.6, timeout_s=5)
    for replica in (deployment.a, deployment.b):
        assert not hit_on(replica, "Which planet has the most moons?", "sk-brief-1")


def stream_text(url: str, text: str) -> tuple[str, dict[str, str]]:
    body = {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": text}]}
    auth = {"authorization": "Bearer sk-acme-1"}
    pieces: list[str] = []
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, headers=auth, timeout=30
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"]
                pieces += [c["delta"].get("content") or "" for c in delta]
        return "".join(pieces), dict(r.headers)


def test_concurrent_identical_misses_on_two_replicas_make_one_engine_call(
    deployment: Deployment,
) -> None:
    text = "Summarise the history of the bicycle in one line [[slow:0.1]]"
    before = deployment.upstream.completions_called
    start = threading.Barrier(8)
    answers: list[tuple[str, dict[str, str]]] = []

    def client(url: str, streaming: bool) -> None:
        start.wait()
        if streaming:
            answers.append(stream_text(url, text))
        else:
            response = ask(url, text)
            answers.append((content(response), dict(response.headers)))

    plan = [(deployment.a, False)] * 3 + [(deployment.b, False)] * 3
    plan += [(deployment.a, True), (deployment.b, True)]
    threads = [threading.Thread(target=client, args=job) for job in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 8
    assert deployment.upstream.completions_called == before + 1
    assert len({text for text, _ in answers}) == 1 and answers[0][0]
    assert any(h.get("x-cache-coalesced") == "remote" for _, h in answers)
    metrics = httpx.get(f"{deployment.b}/metrics").text + httpx.get(f"{deployment.a}/metrics").text
    assert 'cache_proxy_remote_coalesced_total{outcome="served",tenant="acme"}' in metrics


def test_a_changed_engine_revision_never_serves_old_entries(
    deployment: Deployment, tmp_path: Path
) -> None:
    ask(deployment.a, "How many strings does a cello have?")
    wait_until_sync(lambda: hit_on(deployment.b, "How many strings does a cello have?"))
    config = json.loads(json.dumps(deployment.config))
    config["upstream"]["revision"] = "rev-2"  # new weights behind the same model name
    with proxy_process(config, tmp_path) as upgraded:
        assert not hit_on(upgraded, "How many strings does a cello have?")
        health = httpx.get(f"{upgraded}/readyz").json()["shared_tier"]
        assert health["space"] != httpx.get(f"{deployment.a}/readyz").json()["shared_tier"]["space"]
    assert hit_on(deployment.a, "How many strings does a cello have?")  # the old space still is


def test_redis_down_degrades_to_misses_and_recovers(deployment: Deployment) -> None:
    ask(deployment.a, "What is the boiling point of water at sea level?")
    wait_until_sync(
        lambda: hit_on(deployment.a, "What is the boiling point of water at sea level?")
    )
    deployment.redis.stop()
    started = time.monotonic()
    fresh = ask(deployment.a, "Name a famous Norwegian painter")
    assert fresh.status_code == 200 and fresh.headers["x-cache"] == "MISS"
    assert time.monotonic() - started < 5  # bounded by cache.redis.timeout_s, never hangs
    cached = ask(deployment.a, "What is the boiling point of water at sea level?")
    assert cached.status_code == 200 and cached.headers["x-cache"] == "HIT"  # from the mirror
    ready = httpx.get(f"{deployment.a}/readyz")
    assert ready.status_code == 200 and ready.json()["shared_tier"]["state"] == "degraded"
    metrics = httpx.get(f"{deployment.a}/metrics").text
    assert "cache_proxy_shared_tier_up 0.0" in metrics
    assert "cache_proxy_shared_tier_errors_total{" in metrics
    refused = httpx.post(f"{deployment.a}/admin/flush", headers=ADMIN)
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "server_error"
    deployment.redis.start()
    for replica in (deployment.a, deployment.b):
        wait_until_sync(
            lambda r=replica: (
                httpx.get(f"{r}/readyz").json()["shared_tier"]  # type: ignore[misc]
                == {"backend": "redis", "state": "ok", "space": _space(r)}
            ),
            timeout_s=20,
        )
    # The log kept its place through the outage (AOF): resumed, not every entry read again.
    metrics = httpx.get(f"{deployment.a}/metrics").text
    assert _sample(metrics, "cache_proxy_mirror_resumes_total", "acme") >= 1
    assert _sample(metrics, "cache_proxy_mirror_rebuilds_total", "acme") == 1  # the start only
    ask(deployment.a, "Name a famous Norwegian composer")
    wait_until_sync(lambda: hit_on(deployment.b, "Name a famous Norwegian composer"))


def _sample(metrics: str, name: str, tenant: str) -> float:
    prefix = f'{name}{{tenant="{tenant}"}} '
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix)).split()[-1])


def _space(url: str) -> str:
    return str(httpx.get(f"{url}/readyz").json()["shared_tier"]["space"])


def test_both_replicas_restarted_still_serve_the_entries(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    upstream = ScriptedUpstream()
    try:
        with serve_in_thread(upstream.app) as upstream_url:
            config = shared_config(upstream_url, redis.url, prefix="restart:")
            with proxy_process(config, tmp_path / "a"), proxy_process(config, tmp_path / "b") as b:
                ask(b, "What does a barometer measure?")
            with proxy_process(config, tmp_path / "a2") as a2:  # a new pod, a new process
                wait_until_sync(lambda: hit_on(a2, "What does a barometer measure?"))
            assert upstream.completions_called == 1
    finally:
        redis.stop()


def test_embedded_snapshot_survives_a_restart(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with serve_in_thread(upstream.app) as upstream_url:
        config = {
            "upstream": {"url": upstream_url},
            "cache": {"snapshot_path": str(tmp_path / "snapshot" / "cache.snap")},
            "tenants": {"acme": {"api_keys": ["sk-acme-1"]}},
        }
        with proxy_process(config, tmp_path / "first") as first:
            assert ask(first, "What is the speed of sound in air?").headers["x-cache"] == "MISS"
        assert (tmp_path / "snapshot" / "cache.snap").exists()  # written at shutdown
        with proxy_process(config, tmp_path / "second") as second:
            assert hit_on(second, "What is the speed of sound in air?")
        assert upstream.completions_called == 1

"""Wiring: health, readiness, models passthrough, and answers while the embedder loads."""

from __future__ import annotations

import time

import httpx

from cache_proxy.app import create_app
from cache_proxy.config import parse_settings
from cache_proxy.embedding.base import Embedder
from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat
from tests.support.embedders import GatedEmbedder
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.servers import free_port
from tests.support.waiting import wait_until


async def test_ready_only_when_embedder_loaded_and_upstream_answers(
    embedder: Embedder,
) -> None:
    upstream, gated = ScriptedUpstream(), GatedEmbedder(embedder)
    app = create_app(
        parse_settings(TWO_TENANTS),
        embedder=gated,
        upstream_transport=httpx.ASGITransport(app=upstream.app),
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as client,
    ):
        assert (await client.get("/healthz")).status_code == 200
        loading = await client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["checks"]["embedder"] is False
        early = await client.post(
            "/v1/chat/completions",
            json=chat("hi"),
            headers={"authorization": "Bearer sk-acme-1"},
        )
        assert early.status_code == 503 and "loading" in early.json()["error"]["message"]
        gated.gate.set()
        await wait_until(lambda: app.state.runtime.pipeline is not None, 60, "the pipeline")
        assert (await client.get("/readyz")).status_code == 200


async def test_not_ready_when_upstream_unreachable(embedder: Embedder) -> None:
    config = {**TWO_TENANTS, "upstream": {"url": f"http://127.0.0.1:{free_port()}"}}
    app = create_app(parse_settings(config), embedder=embedder)
    async with app.router.lifespan_context(app):
        await wait_until(lambda: app.state.runtime.pipeline is not None, 60, "the pipeline")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://p"
        ) as client:
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"] == {"embedder": True, "upstream": False}


async def test_models_passthrough_needs_a_tenant_key(proxy: ProxyUnderTest) -> None:
    assert (await proxy.client.get("/v1/models")).status_code == 401
    models = await proxy.client.get("/v1/models", headers=proxy.headers())
    assert models.json()["data"][0]["id"] == "scripted"


async def test_readyz_reports_the_embedded_backend(proxy: ProxyUnderTest) -> None:
    ready = await proxy.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["shared_tier"] == {"backend": "embedded", "state": "ok"}


async def test_unreachable_redis_degrades_without_failing_requests_or_readiness(
    proxy_factory: ProxyFactory,
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    cache = {"backend": "redis", "redis": {"url": nobody, "timeout_s": 0.2}}
    async with proxy_factory({**TWO_TENANTS, "cache": cache}) as proxy:
        for _ in range(2):  # the second one meets the open breaker: no wait at all
            started = time.monotonic()
            answer = await proxy.client.post(
                "/v1/chat/completions", json=chat("Is Redis up?"), headers=proxy.headers()
            )
            assert answer.status_code == 200 and answer.headers["x-cache"] == "MISS"
            assert time.monotonic() - started < 2
        ready = await proxy.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["shared_tier"]["state"] in ("connecting", "degraded")
        assert "redis://" not in ready.text  # the URL may carry a password
        admin = {"authorization": "Bearer admin-secret"}
        flush = await proxy.client.post("/admin/flush", headers=admin)
        assert flush.status_code == 503 and flush.json()["error"]["type"] == "server_error"
        assert proxy.upstream.completions_called == 2  # nothing was stored or shared

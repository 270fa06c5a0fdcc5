from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cache_proxy.app import create_app
from cache_proxy.config import EmbeddingSettings, parse_settings
from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.layout import default_export_dir, is_exported
from cache_proxy.embedding.loader import load_embedder, packaged_model_path
from cache_tools.commands import missing_modules
from tests.support.redis_server import RedisServer
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.waiting import wait_until

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Where `make` keeps the embedder export (the proxies the tests start inherit it).
os.environ.setdefault(
    "CACHE_PROXY_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "build" / "cache-proxy")
)

TWO_TENANTS: dict[str, Any] = {
    "upstream": {"url": "http://engine.test"},
    "admin": {"token": "admin-secret"},
    "tenants": {
        "acme": {"api_keys": ["sk-acme-1"], "threshold": 0.9},
        "globex": {"api_keys": ["sk-globex-1"], "threshold": 0.9},
    },
}


@pytest.fixture(scope="session")
def onnx_export_dir() -> str:
    """The packaged embedder's export where the proxy looks by default ($CACHE_PROXY_CACHE_DIR;
    `make` points it into build/), so proxy processes the tests start find it too. Made (or
    checked current) by cache_tools; a serving-only venv has no exporter and must be given it."""
    directory = default_export_dir(None)
    if missing_modules("export"):  # the serving-only venv: exported beforehand by the full one
        if not is_exported(directory):
            pytest.exit(f"no embedder export at {directory}: run `cache-proxy export-embedder`")
        return str(directory)
    from cache_tools.export.embedder import ensure_export

    return str(ensure_export(packaged_model_path(), directory))


@pytest.fixture(scope="session")
def embedder(onnx_export_dir: str) -> Embedder:
    """The real packaged all-MiniLM-L6-v2 on the default backend, loaded once per session."""
    return load_embedder(EmbeddingSettings(onnx_dir=onnx_export_dir))


@dataclass
class ProxyUnderTest:
    app: FastAPI
    client: httpx.AsyncClient
    upstream: ScriptedUpstream

    def headers(self, key: str = "sk-acme-1", **extra: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}", **extra}

    async def tenant_report(self, path: str, tenant: str = "acme") -> dict[str, Any]:
        """One tenant's part of GET /admin/<path> (with TWO_TENANTS' admin token)."""
        admin = {"authorization": "Bearer admin-secret"}
        response = await self.client.get(f"/admin/{path}", headers=admin)
        assert response.status_code == 200
        report: dict[str, Any] = response.json()["tenants"][tenant]
        return report


ProxyFactory = Callable[..., AbstractAsyncContextManager[ProxyUnderTest]]


@pytest.fixture
def proxy_factory(embedder: Embedder) -> ProxyFactory:
    @asynccontextmanager
    async def make(
        config: dict[str, Any] | None = None,
        upstream: ScriptedUpstream | None = None,
        wrap_embedder: Callable[[Embedder], Embedder] | None = None,
    ) -> AsyncIterator[ProxyUnderTest]:
        """In-process proxy; with `upstream` given, over real HTTP to that live upstream."""
        live = upstream is not None
        upstream = upstream or ScriptedUpstream()
        transport = None if live else httpx.ASGITransport(app=upstream.app)
        settings = parse_settings(config or TWO_TENANTS)
        model = wrap_embedder(embedder) if wrap_embedder else embedder
        app = create_app(settings, embedder=model, upstream_transport=transport)
        async with app.router.lifespan_context(app):
            await wait_until(lambda: app.state.runtime.pipeline is not None, what="pipeline")
            to_proxy = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=to_proxy, base_url="http://proxy.test") as c:
                yield ProxyUnderTest(app, c, upstream)

    return make


@pytest.fixture
async def proxy(proxy_factory: ProxyFactory) -> AsyncIterator[ProxyUnderTest]:
    async with proxy_factory() as under_test:
        yield under_test


def chat(text: str, **params: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [{"role": "user", "content": text}], **params}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests keep apart by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests on the shared server never meet."""
    return f"t{uuid.uuid4().hex[:12]}:"

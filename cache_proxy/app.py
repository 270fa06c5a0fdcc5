"""create_app(settings): wiring and lifespan only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faiss
import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse, Response

from cache_proxy.admin import build_admin_router
from cache_proxy.config import Settings
from cache_proxy.embedding import Embedder, MicroBatcher, load_embedder
from cache_proxy.embedding.loader import embedder_identity
from cache_proxy.errors import (
    BadRequest,
    InternalError,
    NotReady,
    ProxyError,
    SharedTierUnavailable,
)
from cache_proxy.metrics import Metrics
from cache_proxy.pipeline import Pipeline
from cache_proxy.reload import ConfigWatcher
from cache_proxy.responses import error_response, raw_json
from cache_proxy.store import CacheBackend, CacheSpace, SharedUnavailable
from cache_proxy.store.factory import build_backend
from cache_proxy.tenancy import TenantDirectory
from cache_proxy.upstream import Upstream
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.policy import OnlineVerifyPolicy
from cache_proxy.verify.verifier import VerifierRegistry

logger = logging.getLogger(__name__)
_READY_PROBE_TIMEOUT_S = 2.0


class Runtime:
    """What the app holds: settings, the shared clients, and the pipeline once loaded."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.metrics = Metrics()
        self.upstream = Upstream(settings.upstream, transport)
        self.tenants = TenantDirectory(settings)
        self.pipeline: Pipeline | None = None
        self.watcher: ConfigWatcher | None = None
        self.load_error: str | None = None
        self.verifiers = VerifierRegistry()  # loaded once per model path, for every tenant

    def cache_space(self, embedder: Embedder) -> CacheSpace:
        """Which embedder and engine build this replica's entries belong to (blocking I/O)."""
        upstream = self.settings.upstream
        return CacheSpace(
            embedder_digest=embedder_identity(self.settings.embedding),
            dimension=embedder.dimension,
            engine_revision=upstream.revision,
            quantization=upstream.quantization,
            chat_template_digest=upstream.chat_template_digest,
        )

    def preload_verifiers(self) -> None:
        """Each tenant's verifier, loaded at start (blocking): a missing export shows in the
        log now, naming the command that makes it, not at the first near-miss."""
        for path in sorted(self.tenants.verifier_paths()):
            try:
                self.verifiers.load(path)
            except Exception as exc:  # that tenant fails closed (misses) until it is fixed
                logger.error("verifier %s cannot load: %s", path, exc)

    def online_tenants(self) -> list[tuple[str, OnlineVerifyPolicy]]:
        """The tenants with online verification, and its config (read at each refresh)."""
        found = (self.tenants.get(name) for name in self.tenants.names)
        return [
            (t.name, t.policy.verify.online)
            for t in found
            if t is not None and t.policy.verify.online.enabled
        ]

    def build_pipeline(self, embedder: Embedder, store: CacheBackend) -> None:
        cache = self.settings.cache
        self.pipeline = Pipeline(
            tenants=self.tenants,
            store=store,
            embedder=MicroBatcher(
                embedder,
                self.settings.embedding.max_batch_size,
                self.settings.embedding.max_wait_ms,
            ),
            upstream=self.upstream,
            metrics=self.metrics,
            limits=self.settings.server,
            top_k=cache.top_k,
            decider=HitDecider(self.verifiers.load),
        )

    def apply_reload(self, new: Settings) -> None:
        """Tenants, thresholds and policies change live; other sections wait for a restart."""
        self.settings = self.settings.model_copy(
            update={"tenants": new.tenants, "admin": new.admin}
        )
        self.tenants = TenantDirectory(self.settings)
        if self.pipeline is not None:
            self.pipeline.tenants = self.tenants
            self.pipeline.store.set_tenants(self.tenants.names)


def create_app(
    settings: Settings,
    config_path: Path | None = None,
    embedder: Embedder | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    runtime = Runtime(settings, config_path, upstream_transport)
    app = FastAPI(title="vLLM semantic cache proxy", lifespan=_lifespan(runtime, embedder))
    app.state.runtime = runtime
    _install_error_handlers(app)
    _install_routes(app, runtime)
    app.include_router(build_admin_router())
    return app


def _lifespan(runtime: Runtime, embedder: Embedder | None) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        faiss.omp_set_num_threads(1)  # single-query search: threads cost more than they save
        loader = asyncio.get_running_loop().create_task(_load(runtime, embedder))
        if runtime.config_path is not None:
            runtime.watcher = ConfigWatcher(
                runtime.config_path,
                runtime.settings.server.reload_interval_s,
                runtime.apply_reload,
                runtime.settings,
            )
            runtime.watcher.start()
        try:
            yield
        finally:
            await _shutdown(runtime, loader)

    return lifespan


async def _load(runtime: Runtime, embedder: Embedder | None) -> None:
    """Loads the embedder off the event loop so /healthz answers while it loads."""
    try:
        if embedder is None:
            embedder = await asyncio.to_thread(load_embedder, runtime.settings.embedding)
        await asyncio.to_thread(embedder.encode, ["warm-up"])
        space = await asyncio.to_thread(runtime.cache_space, embedder)
        store = build_backend(runtime.settings.cache, space, runtime.metrics)
        store.set_tenants(runtime.tenants.names)
        await store.start()
        await asyncio.to_thread(runtime.preload_verifiers)
        runtime.build_pipeline(embedder, store)
        verdicts = store.verdict_log()
        if verdicts is not None and runtime.pipeline is not None:
            runtime.pipeline.shadow.share_through(verdicts, lambda: runtime.tenants.names)
        explorations = store.exploration_log()
        if explorations is not None and runtime.pipeline is not None:
            runtime.pipeline.explorer.share_through(explorations, runtime.online_tenants)
        logger.info(
            "embedder ready (dimension %d); cache backend %s, space %s",
            embedder.dimension,
            store.kind,
            space.space_id,
        )
    except Exception as exc:
        runtime.load_error = f"{type(exc).__name__}: {exc}"
        logger.exception("the embedder failed to load")


async def _shutdown(runtime: Runtime, loader: asyncio.Task[None]) -> None:
    loader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loader
    if runtime.watcher is not None:
        await runtime.watcher.stop()
    if runtime.pipeline is not None:
        await runtime.pipeline.aclose()
    await runtime.upstream.aclose()


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProxyError)
    async def on_proxy_error(request: Request, exc: ProxyError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Routes outside the pipeline (admin, models): our bug, in the OpenAI shape.
        logger.error("internal error on %s: %s", request.url.path, type(exc).__name__, exc_info=exc)
        return error_response(InternalError())

    @app.exception_handler(SharedUnavailable)
    async def on_shared_down(request: Request, exc: SharedUnavailable) -> JSONResponse:
        return error_response(
            SharedTierUnavailable(
                "The shared cache tier (Redis) did not answer: the change was applied to this "
                "replica only. Retry once Redis is back."
            )
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"] if p != "body")
        return error_response(BadRequest(f"Invalid value for '{param}': {first['msg']}.", param))


def _install_routes(app: FastAPI, runtime: Runtime) -> None:
    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _loaded(runtime).handle("chat", request)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _loaded(runtime).handle("completion", request)

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        runtime.tenants.resolve(request.headers)
        raw = await runtime.upstream.get("/v1/models")
        return raw_json(raw.status_code, raw.body, {})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = {
            "embedder": runtime.pipeline is not None,
            "upstream": await _upstream_reachable(runtime),
        }
        body: dict[str, Any] = {"ready": all(checks.values()), "checks": checks}
        if runtime.pipeline is not None:  # reported, never failing the pod: misses still work
            body["shared_tier"] = runtime.pipeline.store.health()
        if runtime.load_error:
            body["embedder_error"] = runtime.load_error
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        if runtime.pipeline is not None:
            runtime.pipeline.refresh_gauges()
        return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")


def _loaded(runtime: Runtime) -> Pipeline:
    if runtime.pipeline is None:
        raise NotReady("The proxy is still loading its embedding model; retry shortly.")
    return runtime.pipeline


async def _upstream_reachable(runtime: Runtime) -> bool:
    for path in ("/health", "/v1/models"):
        with contextlib.suppress(ProxyError):
            raw = await runtime.upstream.get(path, timeout_s=_READY_PROBE_TIMEOUT_S)
            if raw.status_code < 500 and raw.status_code != 404:
                return True
    return False

"""Admin API (token-protected): per-tenant stats, invalidate by tenant and/or model, flush."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from cache_proxy.body import read_body
from cache_proxy.errors import BadRequest, Forbidden, NotReady
from cache_proxy.pipeline import Pipeline
from cache_proxy.schemas import parse_json_body
from cache_proxy.tenancy import Tenant, bearer_token


class InvalidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str | None = None
    model: str | None = None
    entry: str | None = None  # an x-cache-entry value: remove that one answer


def build_admin_router() -> APIRouter:
    router = APIRouter(prefix="/admin")

    @router.get("/stats")
    async def stats(request: Request) -> dict[str, Any]:
        pipeline = _authorised(request)
        tenants = (pipeline.tenants.get(name) for name in pipeline.tenants.names)
        return {"tenants": {t.name: _tenant_stats(pipeline, t) for t in tenants if t is not None}}

    @router.get("/shadow")
    async def shadow(request: Request) -> dict[str, Any]:
        """Shadow-verification results per tenant, suspect prompt pairs included (admin only)."""
        pipeline = _authorised(request)
        tenants = (pipeline.tenants.get(name) for name in pipeline.tenants.names)
        return {"tenants": {t.name: _shadow_report(pipeline, t) for t in tenants if t is not None}}

    @router.get("/online")
    async def online(request: Request) -> dict[str, Any]:
        """Online verification per tenant: learned boundary, verdicts in the window, outcomes."""
        pipeline = _authorised(request)
        tenants = (pipeline.tenants.get(name) for name in pipeline.tenants.names)
        return {
            "tenants": {
                t.name: pipeline.explorer.report(t.name, t.policy.verify.online)
                for t in tenants
                if t is not None
            }
        }

    @router.post("/invalidate")
    async def invalidate(request: Request) -> dict[str, Any]:
        pipeline = _authorised(request)  # before a byte of the body is read
        body = await _invalidate_request(request, pipeline)
        if body.tenant is not None and pipeline.tenants.get(body.tenant) is None:
            raise BadRequest(f"Unknown tenant '{body.tenant}'.", param="tenant")
        try:
            if body.entry is not None:
                removed = await _remove_entry(pipeline, body)
            else:
                removed = await pipeline.store.invalidate(tenant=body.tenant, model=body.model)
        finally:
            _refresh_entry_gauges(pipeline)
        return {"removed": removed, "tenant": body.tenant, "model": body.model, "entry": body.entry}

    @router.post("/flush")
    async def flush(request: Request) -> dict[str, Any]:
        pipeline = _authorised(request)
        try:
            removed = await pipeline.store.invalidate()
        finally:
            _refresh_entry_gauges(pipeline)
        return {"removed": removed}

    return router


async def _remove_entry(pipeline: Pipeline, body: InvalidateRequest) -> int:
    # Entry keys are per tenant: without the tenant a key could name another tenant's entry.
    if body.tenant is None:
        raise BadRequest("'tenant' is required when 'entry' is given.", param="tenant")
    if body.model is not None:
        raise BadRequest("Give either 'entry' or 'model', not both.", param="entry")
    return await pipeline.store.remove_entry(body.tenant, body.entry or "")


ADMIN_MAX_BODY_BYTES = 65_536  # an admin call is a few fields


async def _invalidate_request(request: Request, pipeline: Pipeline) -> InvalidateRequest:
    limit = min(ADMIN_MAX_BODY_BYTES, pipeline.limits.max_body_bytes)
    raw = await read_body(request, limit, pipeline.limits.body_timeout_s)
    try:
        return InvalidateRequest.model_validate(parse_json_body(raw))  # empty: 400, no flush
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise BadRequest(f"Invalid value for '{param}': {first['msg']}.", param=param) from exc


def _authorised(request: Request) -> Pipeline:
    expected = request.app.state.runtime.settings.admin.resolved_token()
    if not expected:
        raise Forbidden("The admin API is disabled: set admin.token or admin.token_env.")
    given = bearer_token(request.headers) or request.headers.get("x-admin-token", "")
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("Invalid admin token.")
    pipeline: Pipeline | None = request.app.state.runtime.pipeline
    if pipeline is None:
        raise NotReady("The proxy is still loading its embedding model.")
    return pipeline


def _tenant_stats(pipeline: Pipeline, tenant: Tenant) -> dict[str, Any]:
    cache = pipeline.store.tenant(tenant.name)
    tally = pipeline.metrics.tallies[tenant.name]
    served = tally["hit_exact"] + tally["hit_semantic"]
    lookups = served + tally["miss"]
    return {
        "entries": len(cache),
        "evictions": cache.evictions,
        "requests": dict(tally),
        "hit_rate": served / lookups if lookups else 0.0,
        "threshold": tenant.policy.threshold,
    }


def _shadow_report(pipeline: Pipeline, tenant: Tenant) -> dict[str, Any]:
    policy = tenant.policy
    target = policy.verify.shadow_target_error
    return {
        **pipeline.shadow.report(tenant.name),
        "threshold": policy.threshold,
        "effective_threshold": pipeline.shadow.threshold(tenant.name, policy.threshold, target),
        "target_error": target,
    }


def _refresh_entry_gauges(pipeline: Pipeline) -> None:
    for name in pipeline.store.tenant_names():
        pipeline.metrics.entries.labels(name).set(len(pipeline.store.tenant(name)))

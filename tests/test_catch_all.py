"""Unexpected failures on the request path: the embedder raising (a 503: retry elsewhere) and
a bug anywhere else (the one catch-all: a 500) are OpenAI-shaped, counted for the tenant and
logged with the trace (not the prompt); never Starlette's plain-text page, never a stored entry."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from tests.conftest import ProxyFactory, ProxyUnderTest, chat
from tests.support.embedders import WrappedEmbedder

POISON = "this prompt makes the embedder raise"


class RaisingEmbedder(WrappedEmbedder):
    """The real embedder, except that it raises a bug-like error on one text."""

    def before_encode(self, texts: Sequence[str]) -> None:
        if POISON in texts:
            raise ZeroDivisionError("a bug in the embedder")


async def _ask(proxy: ProxyUnderTest, text: str) -> httpx.Response:
    return await proxy.client.post("/v1/chat/completions", json=chat(text), headers=proxy.headers())


def _openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "server_error"
    return error


async def test_an_embedder_failure_is_an_openai_503_counted_for_the_tenant(
    proxy_factory: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with proxy_factory(wrap_embedder=RaisingEmbedder) as proxy:
        with caplog.at_level(logging.INFO, logger="cache_proxy"):
            error = _openai_error(await _ask(proxy, POISON), 503)
        assert "embedding model failed" in error["message"]
        assert any(r.exc_info and "ZeroDivisionError" in r.getMessage() for r in caplog.records)
        assert any("tenant=acme" in r.getMessage() and "status=503" in r.getMessage()
                   for r in caplog.records)  # fmt: skip
        assert POISON not in caplog.text  # the trace, never the prompt
        metrics = (await proxy.client.get("/metrics")).text
        assert 'cache_proxy_requests_total{outcome="error",tenant="acme"} 1.0' in metrics
        after = await _ask(proxy, "What does torch.cat do?")  # nothing stored; the next works
        assert after.status_code == 200 and after.headers["x-cache"] == "MISS"
        assert len(proxy.app.state.runtime.pipeline.store.tenant("acme")) == 1


async def test_an_unexpected_bug_is_an_openai_500_through_the_catch_all(
    proxy_factory: ProxyFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy_factory() as proxy:
        cache = proxy.app.state.runtime.pipeline.store.tenant("acme")

        async def broken_search(*args: object, **kwargs: object) -> list[object]:
            raise KeyError("a bug in the index")

        monkeypatch.setattr(cache, "search", broken_search)
        with caplog.at_level(logging.ERROR, logger="cache_proxy"):
            error = _openai_error(await _ask(proxy, "What does torch.cat do?"), 500)
        assert "logged" in error["message"]
        assert any(
            "tenant=acme" in r.getMessage() and "KeyError" in r.getMessage() and r.exc_info
            for r in caplog.records
        )
        metrics = (await proxy.client.get("/metrics")).text
        assert 'cache_proxy_requests_total{outcome="error",tenant="acme"} 1.0' in metrics
        assert len(cache) == 0  # no entry stored from a failed request

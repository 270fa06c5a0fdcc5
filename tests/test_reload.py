from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
import yaml

from cache_proxy.app import create_app
from cache_proxy.config import load_settings
from cache_proxy.embedding.base import Embedder
from tests.conftest import chat
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.waiting import wait_until

CONFIG = {
    "upstream": {"url": "http://engine.test"},
    "server": {"reload_interval_s": 0.05},
    "tenants": {"acme": {"api_keys": ["sk-acme-1"], "threshold": 0.92}},
}


async def test_tenants_reload_on_file_change_and_bad_file_keeps_old(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    upstream = ScriptedUpstream()
    app = create_app(
        load_settings(path),
        config_path=path,
        embedder=embedder,
        upstream_transport=httpx.ASGITransport(app=upstream.app),
    )
    runtime = app.state.runtime
    async with app.router.lifespan_context(app):
        await wait_until(lambda: runtime.pipeline is not None, 60, "the pipeline")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://p"
        ) as client:
            new_key = {"authorization": "Bearer sk-new"}
            assert (
                await client.post("/v1/chat/completions", json=chat("hi"), headers=new_key)
            ).status_code == 401
            changed = {
                **CONFIG,
                "tenants": {
                    "acme": {"api_keys": ["sk-acme-1"], "threshold": 0.8},
                    "initech": {"api_keys": ["sk-new"]},
                },
            }
            path.write_text(yaml.safe_dump(changed))
            await wait_until(
                lambda: runtime.tenants.get("initech") is not None, 5, "the reloaded tenants"
            )
            assert runtime.pipeline.tenants.get("acme").policy.threshold == 0.8
            assert (
                await client.post("/v1/chat/completions", json=chat("hi"), headers=new_key)
            ).status_code == 200

            with caplog.at_level(logging.ERROR):
                path.write_text("tenants: {acme: {threshold: 7}}\nupstream: {url: x}\n")
                await wait_until(
                    lambda: "reload rejected" in caplog.text, 5, "the rejected reload's log line"
                )
            assert runtime.pipeline.tenants.get("acme").policy.threshold == 0.8
            assert "tenants.acme.threshold" in caplog.text

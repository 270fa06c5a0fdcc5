"""The proxy config in the ConfigMap: loadable by the proxy's own loader, tenant thresholds as
set, keys only through Secrets, and a checksum that leaves hot-reloaded tenants out."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import (
    EXAMPLES,
    FULLNAME,
    Doc,
    containers,
    engine_deployment,
    named,
    of_kind,
    proxy_config,
    render,
    walk_strings,
)
from tests.k8s.renders import RENDERS

pytestmark = pytest.mark.k8s

CHECKSUM = "checksum/config"


def front_pod_annotations(docs: list[Doc]) -> dict[str, str]:
    annotations: dict[str, str] = named(docs, "Deployment", FULLNAME)["spec"]["template"][
        "metadata"
    ]["annotations"]
    return annotations


def secret_env(container: Doc) -> dict[str, Doc]:
    """env var name -> secretKeyRef, for env vars that come from a Secret."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "valueFrom" in e
    }


@pytest.mark.parametrize("render_id", list(RENDERS))
def test_config_loads_with_the_proxy_loader(render_id: str) -> None:
    config_module = pytest.importorskip("cache_proxy.config")
    values, sets = RENDERS[render_id]
    raw = proxy_config(render(values, sets))
    settings = config_module.parse_settings(raw, f"ConfigMap ({render_id})")
    assert settings.tenants


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_tenant_thresholds_reach_the_config(example: Path) -> None:
    values: dict[str, Any] = yaml.safe_load(example.read_text())
    expected = {name: t["threshold"] for name, t in values["tenants"].items() if t is not None}
    config = proxy_config(render([example]))
    assert {name: t["threshold"] for name, t in config["tenants"].items()} == expected


def test_set_tenant_threshold_on_the_command_line() -> None:
    config = proxy_config(
        render(
            sets=["json:tenants.acme.threshold=0.97", "tenants.acme.apiKeysFromSecret={acme-key}"]
        )
    )
    assert config["tenants"]["acme"]["threshold"] == 0.97
    assert config["tenants"]["acme"]["api_keys_env"] == ["TENANT_ACME_API_KEY_0"]
    assert config["tenants"]["default"]["threshold"] == 0.92


def test_tenant_keys_and_admin_token_come_from_the_secret() -> None:
    docs = render([next(p for p in EXAMPLES if p.name == "gpu-l4-awq.yaml")])
    config = proxy_config(docs)
    proxy = containers(engine_deployment(docs))["proxy"]
    refs = secret_env(proxy)
    secret_name = f"{FULLNAME}-keys"
    assert config["admin"] == {"token_env": "CACHE_PROXY_ADMIN_TOKEN"}
    assert refs["CACHE_PROXY_ADMIN_TOKEN"] == {"name": secret_name, "key": "admin-token"}
    legal = config["tenants"]["legal"]
    assert "api_keys" not in legal
    assert [refs[name]["key"] for name in legal["api_keys_env"]] == ["legal-key-1", "legal-key-2"]
    for tenant in config["tenants"].values():
        for name in tenant["api_keys_env"]:
            assert refs[name]["name"] == secret_name


def test_existing_secret_name_is_used() -> None:
    docs = render(sets=["secrets.name=my-keys"])
    refs = secret_env(containers(engine_deployment(docs))["proxy"])
    assert {ref["name"] for ref in refs.values()} == {"my-keys"}
    assert not of_kind(docs, "Secret")


def test_no_clear_text_secret_in_the_default_render() -> None:
    docs = render()
    assert not of_kind(docs, "Secret")
    config = proxy_config(docs)
    assert config["admin"].get("token") is None and config["upstream"].get("api_key") is None
    assert all("api_keys" not in t for t in config["tenants"].values())
    for deployment in of_kind(docs, "Deployment"):
        for container in containers(deployment).values():
            for env in container.get("env", []):
                if any(word in env["name"] for word in ("KEY", "TOKEN", "SECRET")):
                    assert "value" not in env, env["name"]
                    assert "secretKeyRef" in env["valueFrom"], env["name"]
    assert not any(s.startswith("sk-") for s in walk_strings(docs))


def test_secret_is_created_only_when_asked() -> None:
    docs = render(
        sets=[
            "secrets.create=true",
            "secrets.data.admin-token=t0k3n",
            "secrets.data.default-api-key=sk-dev",
        ]
    )
    (secret,) = of_kind(docs, "Secret")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"admin-token": "t0k3n", "default-api-key": "sk-dev"}
    assert "checksum/secret" in front_pod_annotations(docs)


def test_engine_api_key_is_shared_through_the_secret() -> None:
    docs = render(sets=["engine.apiKeySecretKey=engine-key"])
    pod = containers(engine_deployment(docs))
    assert secret_env(pod["engine"])["VLLM_API_KEY"]["key"] == "engine-key"
    assert secret_env(pod["proxy"])["UPSTREAM_API_KEY"]["key"] == "engine-key"
    assert proxy_config(docs)["upstream"]["api_key_env"] == "UPSTREAM_API_KEY"


# ------------------------------------------------------------------ checksum/config --------


def test_tenant_edits_do_not_roll_the_pods() -> None:
    """Thresholds and verify policies hot-reload: the ConfigMap changes, the pod template not."""
    before = render()
    after = render(
        sets=[
            "json:tenants.default.threshold=0.8",
            "json:tenants.default.max_temperature=0.5",
            "tenants.default.verify.guards.entities=true",
            "tenants.default.ttl_s=3600",
        ]
    )
    assert proxy_config(after)["tenants"] != proxy_config(before)["tenants"]
    assert front_pod_annotations(after)[CHECKSUM] == front_pod_annotations(before)[CHECKSUM]
    assert named(after, "Deployment", FULLNAME) == named(before, "Deployment", FULLNAME)


@pytest.mark.parametrize(
    "change",
    [
        "proxy.config.cache.max_entries=5",
        "proxy.config.embedding.backend=torch",
        "proxy.config.server.max_body_bytes=10",
        "proxy.config.upstream.read_timeout_s=30",
        "engine.config.port=8001",  # moves upstream.url
        "engine.modelRevision=abc123",  # moves upstream.revision
        "proxy.config.cache.backend=redis,proxy.redis.urlSecret.name=redis",
        "proxy.config.cache.snapshot_path=/var/lib/cache-proxy/snapshot.bin",
    ],
)
def test_restart_requiring_sections_roll_the_pods(change: str) -> None:
    assert (
        front_pod_annotations(render(sets=[change]))[CHECKSUM]
        != front_pod_annotations(render())[CHECKSUM]
    )


def test_checksum_covers_exactly_the_non_tenant_config() -> None:
    import hashlib

    docs = render()
    text = named(docs, "ConfigMap", FULLNAME)["data"]["config.yaml"]
    static_part = text.split("\ntenants:\n")[0]
    digest = hashlib.sha256(static_part.encode()).hexdigest()
    assert front_pod_annotations(docs)[CHECKSUM] == digest

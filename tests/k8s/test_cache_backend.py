"""Cache backends: the Redis URL from a Secret, the embedded snapshot volume, engine identity."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.k8s.chart import (
    CHART,
    EXAMPLES,
    Doc,
    containers,
    engine_deployment,
    of_kind,
    pod_spec,
    proxy_config,
    render,
    try_template,
    walk_strings,
)
from tests.k8s.renders import STANDALONE

pytestmark = pytest.mark.k8s

REDIS_ENV = "CACHE_PROXY_REDIS_URL"
REDIS = ("proxy.config.cache.backend=redis", "proxy.redis.urlSecret.name=llm-redis")
SNAPSHOT = "/var/lib/cache-proxy/snapshot.bin"
REDIS_EXAMPLE = next(p for p in EXAMPLES if p.name == "gpu-multi-replica-redis.yaml")
TOPOLOGIES = pytest.mark.parametrize("topology", [(), STANDALONE], ids=["sidecar", "standalone"])


def proxy_pod(docs: list[Doc]) -> Doc:
    (deployment,) = [d for d in of_kind(docs, "Deployment") if "proxy" in containers(d)]
    return deployment


def proxy_env(docs: list[Doc]) -> dict[str, Doc]:
    return {e["name"]: e for e in containers(proxy_pod(docs))["proxy"].get("env", [])}


def volumes(docs: list[Doc]) -> dict[str, Doc]:
    return {v["name"]: v for v in pod_spec(proxy_pod(docs))["volumes"]}


def mounts(docs: list[Doc]) -> dict[str, Doc]:
    return {m["name"]: m for m in containers(proxy_pod(docs))["proxy"]["volumeMounts"]}


def refused(sets: list[str]) -> str:
    result = try_template(sets)
    assert result.returncode != 0, "rendered, expected a refusal"
    return result.stderr


# ------------------------------------------------------------------------ Redis URL --------


@TOPOLOGIES
def test_redis_url_comes_from_the_secret(topology: tuple[str, ...]) -> None:
    docs = render(sets=[*topology, *REDIS])
    env = proxy_env(docs)[REDIS_ENV]
    assert env == {
        "name": REDIS_ENV,
        "valueFrom": {"secretKeyRef": {"name": "llm-redis", "key": "redis-url"}},
    }
    redis = proxy_config(docs)["cache"]["redis"]
    assert redis["url_env"] == REDIS_ENV
    assert "url" not in redis
    assert proxy_config(docs)["cache"]["backend"] == "redis"


def test_redis_config_loads_with_the_proxy_loader() -> None:
    config_module = pytest.importorskip("cache_proxy.config")
    settings = config_module.parse_settings(proxy_config(render(sets=REDIS)), "ConfigMap")
    assert settings.cache.backend == "redis"
    assert settings.cache.redis.url_env == REDIS_ENV


def test_redis_secret_key_is_configurable() -> None:
    docs = render(sets=[*REDIS, "proxy.redis.urlSecret.key=url"])
    assert proxy_env(docs)[REDIS_ENV]["valueFrom"]["secretKeyRef"]["key"] == "url"


def test_a_url_env_of_the_user_wins() -> None:
    docs = render(sets=[*REDIS, "proxy.config.cache.redis.url_env=MY_REDIS"])
    assert proxy_config(docs)["cache"]["redis"]["url_env"] == "MY_REDIS"


def test_a_literal_url_needs_no_secret() -> None:
    url = "redis://redis.cache.svc:6379/0"
    docs = render(sets=["proxy.config.cache.backend=redis", f"proxy.config.cache.redis.url={url}"])
    redis = proxy_config(docs)["cache"]["redis"]
    assert redis["url"] == url and "url_env" not in redis
    assert REDIS_ENV not in proxy_env(docs)


def test_embedded_backend_ignores_the_redis_secret() -> None:
    docs = render(sets=["proxy.redis.urlSecret.name=llm-redis"])
    assert REDIS_ENV not in proxy_env(docs)
    cache = proxy_config(docs)["cache"]
    assert cache["backend"] == "embedded" and "url_env" not in cache["redis"]


def test_redis_without_a_url_is_refused() -> None:
    message = refused(["proxy.config.cache.backend=redis"])
    assert "proxy.config.cache.backend" in message and "proxy.redis.urlSecret.name" in message


def test_no_redis_password_in_the_release() -> None:
    """The example's URL reaches the pods only through the Secret: no redis:// text rendered."""
    docs = render([REDIS_EXAMPLE])
    assert not any("redis://" in s or "rediss://" in s for s in walk_strings(docs))
    env = proxy_env(docs)[REDIS_ENV]
    assert "value" not in env and env["valueFrom"]["secretKeyRef"]["name"] == "llm-redis"


# ------------------------------------------------------------------ snapshot volume --------


@TOPOLOGIES
def test_snapshot_on_an_empty_dir_by_default(topology: tuple[str, ...]) -> None:
    docs = render(sets=[*topology, f"proxy.config.cache.snapshot_path={SNAPSHOT}"])
    assert volumes(docs)["cache-snapshot"] == {"name": "cache-snapshot", "emptyDir": {}}
    assert mounts(docs)["cache-snapshot"] == {
        "name": "cache-snapshot",
        "mountPath": "/var/lib/cache-proxy",
    }
    assert proxy_config(docs)["cache"]["snapshot_path"] == SNAPSHOT


@TOPOLOGIES
def test_snapshot_on_an_existing_claim(topology: tuple[str, ...]) -> None:
    sets = [*topology, f"proxy.config.cache.snapshot_path={SNAPSHOT}"]
    docs = render(sets=[*sets, "proxy.snapshot.existingClaim=proxy-cache"])
    assert volumes(docs)["cache-snapshot"] == {
        "name": "cache-snapshot",
        "persistentVolumeClaim": {"claimName": "proxy-cache"},
    }
    assert mounts(docs)["cache-snapshot"]["mountPath"] == "/var/lib/cache-proxy"
    assert not of_kind(docs, "PersistentVolumeClaim")  # the claim is the user's


@TOPOLOGIES
def test_no_snapshot_no_volume(topology: tuple[str, ...]) -> None:
    docs = render(sets=[*topology, "proxy.snapshot.existingClaim=proxy-cache"])
    assert "cache-snapshot" not in volumes(docs)
    assert "cache-snapshot" not in mounts(docs)
    assert proxy_config(docs)["cache"]["snapshot_path"] is None


def test_snapshot_with_redis_is_refused() -> None:
    message = refused([*REDIS, f"proxy.config.cache.snapshot_path={SNAPSHOT}"])
    assert "proxy.config.cache.snapshot_path" in message and "redis" in message


@pytest.mark.parametrize(
    "path",
    [
        "/etc/cache-proxy/snapshot.bin",  # would hide the mounted config
        "/opt/snapshot.bin",  # would hide the image's embedder export (/opt/cache-proxy)
        "/opt/cache-proxy/verifiers/snapshot.bin",  # the verifiers' claim
    ],
)
def test_snapshot_directory_over_another_mount_is_refused(path: str) -> None:
    sets = [f"proxy.config.cache.snapshot_path={path}", "proxy.verifiers.existingClaim=trained"]
    assert "proxy.config.cache.snapshot_path" in refused(sets)


# ----------------------------------------------------------------- engine identity --------


def test_engine_identity_defaults_to_the_engine_values() -> None:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    upstream = proxy_config(render())["upstream"]
    assert upstream["revision"] == values["engine"]["config"]["model"]
    assert upstream["quantization"] == values["engine"]["config"]["quantization"]


@TOPOLOGIES
def test_engine_identity_follows_model_revision_and_quantization(
    topology: tuple[str, ...],
) -> None:
    docs = render(
        sets=[
            *topology,
            "engine.config.model=Qwen/Qwen2.5-7B-Instruct-AWQ",
            "engine.config.quantization=awq",
            "engine.modelRevision=c5a8f0e",
        ]
    )
    upstream = proxy_config(docs)["upstream"]
    assert upstream["revision"] == "Qwen/Qwen2.5-7B-Instruct-AWQ@c5a8f0e"
    assert upstream["quantization"] == "awq"
    # the revision is the cache's only: vLLM's args do not change
    assert "c5a8f0e" not in containers(engine_deployment(docs))["engine"]["args"]


def test_engine_identity_set_by_hand_wins() -> None:
    docs = render(
        sets=[
            "engine.config.quantization=awq",
            "proxy.config.upstream.revision=sha256:0123",
            "proxy.config.upstream.quantization=awq-marlin",
            "proxy.config.upstream.chat_template_digest=sha256:4567",
        ]
    )
    upstream = proxy_config(docs)["upstream"]
    assert upstream["revision"] == "sha256:0123"
    assert upstream["quantization"] == "awq-marlin"
    assert upstream["chat_template_digest"] == "sha256:4567"


# ------------------------------------------------------------------- the example --------


def test_redis_example_shares_one_cache_over_four_gpu_pods() -> None:
    values: dict[str, Any] = yaml.safe_load(REDIS_EXAMPLE.read_text())
    docs = render([REDIS_EXAMPLE])
    deployment = engine_deployment(docs)
    assert values["topology"] == "sidecar" and list(containers(deployment)) == ["engine", "proxy"]
    assert deployment["spec"]["replicas"] == 4
    config = proxy_config(docs)
    assert config["cache"]["backend"] == "redis"
    assert config["cache"]["redis"]["url_env"] == REDIS_ENV
    assert config["cache"].get("snapshot_path") is None
    ttls = {name: t.get("ttl_s") for name, t in config["tenants"].items()}
    expected = {name: t["ttl_s"] for name, t in values["tenants"].items() if t is not None}
    assert ttls == expected and all(ttls.values())
    assert config["upstream"]["quantization"] == "awq"

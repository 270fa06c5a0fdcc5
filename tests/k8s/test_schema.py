"""values.schema.json: wrong types, unknown keys and out-of-range values make helm fail."""

from __future__ import annotations

import json

import pytest

from tests.k8s.chart import CHART, try_template

pytestmark = pytest.mark.k8s

SCHEMA_ERROR = "don't meet the specifications of the schema"

BAD_VALUES = {
    "unknown top-level key": ["replicaCount=2"],
    "unknown engine.config key (typo)": ["engine.config.max_model_length=4096"],
    "unknown engine key": ["engine.gpus=2"],
    "unknown proxy.config section": ["proxy.config.tenants.x.threshold=1"],
    "unknown tenant key (typo)": ["json:tenants.default.treshold=0.9"],
    "wrong type: replicas": ["engine.replicas=many"],
    "wrong type: max_model_len": ["engine.config.max_model_len=long"],
    "wrong type: prefix caching": ["engine.config.enable_prefix_caching=maybe"],
    "wrong type: threshold as string": ['json:tenants.default.threshold="high"'],
    "wrong type: tenant keys not a list": ["tenants.default.apiKeysFromSecret=key"],
    "out of range: threshold": ["json:tenants.default.threshold=1.5"],
    "out of range: gpu_memory_utilization": ["json:engine.config.gpu_memory_utilization=1.2"],
    "out of range: negative gpu count": ["engine.gpu.count=-1"],
    "enum: topology": ["topology=daemonset"],
    "enum: quantization": ["engine.config.quantization=int8"],
    "enum: model storage": ["engine.modelStorage.type=s3"],
    "clear-text admin token": ["proxy.config.admin.token=hunter2"],
    "clear-text engine key": ["proxy.config.upstream.api_key=hunter2"],
    "bad tenant name": ['json:tenants={"acme corp": {"threshold": 0.9}}'],
    "no tenants (default dropped, none added)": ["tenants.default=null"],
    "enum: cache backend": ["proxy.config.cache.backend=memcached"],
    "unknown cache.redis key": ["proxy.config.cache.redis.password=hunter2"],
    "out of range: redis timeout over 30 s": ["proxy.config.cache.redis.timeout_s=31"],
    "out of range: redis timeout 0": ["proxy.config.cache.redis.timeout_s=0"],
    "out of range: redis log_max_len": ["proxy.config.cache.redis.log_max_len=999"],
    "redis url scheme": ["proxy.config.cache.redis.url=http://redis:6379"],
    "relative snapshot_path": ["proxy.config.cache.snapshot_path=snapshot.bin"],
    "snapshot_path in /": ["proxy.config.cache.snapshot_path=/snapshot.bin"],
    "out of range: snapshot_interval_s": ["proxy.config.cache.snapshot_interval_s=0"],
    "out of range: tenant ttl_s 0": ["tenants.default.ttl_s=0"],
    "wrong type: tenant ttl_s": ["tenants.default.ttl_s=forever"],
    "unknown proxy.redis key": ["proxy.redis.url=redis://redis:6379"],
    "empty redis secret key": ["proxy.redis.urlSecret.key="],
    "unknown server key (typo)": ["proxy.config.server.keepalive_s=75"],
    "out of range: body_timeout_s 0": ["proxy.config.server.body_timeout_s=0"],
    "out of range: keep_alive_s 0": ["proxy.config.server.keep_alive_s=0"],
    "wrong type: keep_alive_s": ["proxy.config.server.keep_alive_s=long"],
    "out of range: max_connections 0": ["proxy.config.server.max_connections=0"],
    "wrong type: max_connections float": ["json:proxy.config.server.max_connections=10.5"],
    "out of range: negative shutdown_grace_s": ["proxy.config.server.shutdown_grace_s=-1"],
    "out of range: max_json_depth 3": ["proxy.config.server.max_json_depth=3"],
    "out of range: max_json_depth 1001": ["proxy.config.server.max_json_depth=1001"],
    "out of range: max_messages 0": ["proxy.config.server.max_messages=0"],
    "out of range: negative preStopSeconds": ["proxy.drain.preStopSeconds=-1"],
    "wrong type: preStopSeconds float": ["json:proxy.drain.preStopSeconds=2.5"],
    "unknown proxy.drain key": ["proxy.drain.seconds=5"],
    "wrong type: proxy grace": ["proxy.terminationGracePeriodSeconds=long"],
}


def template(sets: list[str]) -> tuple[int, str]:
    result = try_template(sets)
    return result.returncode, result.stderr


@pytest.mark.parametrize("sets", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_schema_rejects(sets: list[str]) -> None:
    code, stderr = template(sets)
    assert code != 0
    assert SCHEMA_ERROR in stderr, stderr


GOOD_VALUES = {
    "float threshold via --set-json": ["json:tenants.default.threshold=0.97"],
    "integer threshold": ["tenants.default.threshold=1"],
    "new tenant": ['json:tenants.acme={"threshold": 0.9, "apiKeysFromSecret": ["acme"]}'],
    "drop the default tenant": ['json:tenants.acme={"threshold": 0.9}', "tenants.default=null"],
    "batched tokens": ["engine.config.max_num_batched_tokens=8192"],
    "cpu device": ["engine.config.device=cpu", "engine.gpu.count=0"],
    "tenant ttl_s": ["json:tenants.default.ttl_s=86400.5"],
    "tenant ttl_s null": ["tenants.default.ttl_s=null"],
    "redis with a TLS url": [
        "proxy.config.cache.backend=redis",
        "proxy.config.cache.redis.url=rediss://redis.internal:6380/0",
        "json:proxy.config.cache.redis.timeout_s=0.25",
        "proxy.config.cache.redis.log_max_len=1000",
    ],
    "snapshot file": ["proxy.config.cache.snapshot_path=/var/lib/cache-proxy/snapshot.bin"],
    "engine identity set by hand": [
        "proxy.config.upstream.revision=sha256:abc",
        "proxy.config.upstream.quantization=awq",
        "proxy.config.upstream.chat_template_digest=sha256:def",
    ],
    "server limits and timeouts": [
        "json:proxy.config.server.body_timeout_s=0.5",
        "json:proxy.config.server.keep_alive_s=120.5",
        "proxy.config.server.max_connections=1",
        "proxy.config.server.max_json_depth=4",
        "proxy.config.server.max_messages=1",
    ],
    "max_json_depth at the top": ["proxy.config.server.max_json_depth=1000"],
    "max_connections null": ["proxy.config.server.max_connections=null"],
    "no shutdown grace, no preStop": [
        "proxy.config.server.shutdown_grace_s=0",
        "proxy.drain.preStopSeconds=0",
    ],
    "fractional shutdown grace": ["json:proxy.config.server.shutdown_grace_s=7.5"],
    "standalone proxy grace": [
        "topology=standalone",
        "engine.config.host=0.0.0.0",
        "proxy.terminationGracePeriodSeconds=45",
    ],
}


@pytest.mark.parametrize("sets", list(GOOD_VALUES.values()), ids=list(GOOD_VALUES))
def test_schema_accepts(sets: list[str]) -> None:
    code, stderr = template(sets)
    assert code == 0, stderr


def test_schema_is_closed_at_the_top_and_in_the_main_objects() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    for path in (
        "engine",
        "engine.config",
        "engine.gpu",
        "engine.modelStorage",
        "proxy",
        "proxy.config",
        "secrets",
        "ingress",
        "autoscaling",
        "service",
    ):
        node = schema
        for part in path.split("."):
            node = node["properties"][part] if node is not schema else props[part]
        assert node["additionalProperties"] is False, path


def test_proxy_sections_match_the_proxy_settings_models() -> None:
    """values.schema.json mirrors cache_proxy.config: a field added or renamed there must be
    added here too (the schema is closed, so drift would reject valid configs)."""
    config = pytest.importorskip("cache_proxy.config")
    policy = pytest.importorskip("cache_proxy.verify.policy")
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]
    sections = schema["proxy"]["properties"]["config"]["properties"]
    models = {
        "server": config.ServerSettings,
        "upstream": config.UpstreamSettings,
        "embedding": config.EmbeddingSettings,
        "cache": config.CacheSettings,
        "admin": config.AdminSettings,
    }
    assert set(sections) == set(models)
    for name, model in models.items():
        assert set(sections[name]["properties"]) == set(model.model_fields), name
    tenant = schema["tenants"]["additionalProperties"]["oneOf"][0]["properties"]
    assert set(tenant) == set(config.TenantSettings.model_fields) | {"apiKeysFromSecret"}
    verify = tenant["verify"]["properties"]
    assert set(verify["guards"]["properties"]) == set(policy.GuardPolicy.model_fields)
    assert set(verify["verifier"]["properties"]) == set(policy.VerifierPolicy.model_fields)

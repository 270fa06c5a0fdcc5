from __future__ import annotations

from pathlib import Path

import pytest

from cache_proxy.config import ConfigError, default_settings, load_settings, parse_settings

MINIMAL = """\
upstream:
  url: http://127.0.0.1:8000
tenants:
  acme:
    api_keys: ["sk-acme-1"]
    threshold: 0.92
  globex:
    api_keys: ["sk-globex-1"]
    threshold: 0.95
"""


def test_the_minimal_file_is_accepted_as_is(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(MINIMAL)
    settings = load_settings(path)
    assert settings.tenants["globex"].threshold == 0.95
    assert settings.tenants["acme"].resolved_keys() == ("sk-acme-1",)
    assert not settings.open_access


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"upstream": {"url": "x"}, "tenants": {"a": {}}}, "upstream.url"),
        ({"tenants": {"a": {"threshold": 1.5}}}, "tenants.a.threshold"),
        ({"tenants": {"a": {"thresold": 0.9}}}, "unknown key 'tenants.a.thresold'"),
        ({"tenants": {}}, "tenants"),
        ({"tenants": {"a": {}}, "cache": {"index": "hnsw"}}, "cache.index"),
        ({"tenants": {"a": {}}, "cache": {"ivf_nprobe": 0}}, "cache.ivf_nprobe"),
        ({"tenants": {"a": {}}, "colour": "blue"}, "unknown key 'colour'"),
        ({"tenants": {"a": {}}, "open_access": True}, "open_access"),
        ([], "top level"),
        ({"tenants": {"a": {}}, "cache": {"backend": "redis"}}, "cache.redis.url"),
        ({"tenants": {"a": {}}, "cache": {"redis": {"url": "http://r:6379"}}}, "cache.redis.url"),
        ({"tenants": {"a": {"ttl_s": 0}}}, "tenants.a.ttl_s"),
        ({"tenants": {"a": {}}, "cache": {"backend": "memcached"}}, "cache.backend"),
        (
            {"tenants": {"a": {"verify": {"online": {"confidence": 0.5}}}}},
            "tenants.a.verify.online.confidence",
        ),
    ],
)
def test_errors_name_the_key(raw: object, named: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_settings(raw)
    assert named in str(info.value)


def test_keys_and_tokens_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_KEY", "sk-from-env")
    monkeypatch.setenv("ADMIN_TOKEN", "t0k")
    settings = parse_settings(
        {
            "admin": {"token_env": "ADMIN_TOKEN"},
            "tenants": {"acme": {"api_keys_env": ["ACME_KEY", "UNSET_VAR"]}},
        }
    )
    assert settings.tenants["acme"].resolved_keys() == ("sk-from-env",)
    assert settings.admin.resolved_token() == "t0k"


def test_defaults_are_open_access_local_dev() -> None:
    settings = default_settings()
    assert settings.open_access and list(settings.tenants) == ["default"]
    assert settings.upstream.url == "http://127.0.0.1:8000"


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tenants: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(path)


def test_redis_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://:secret@redis.example:6380/0")
    cache = {"backend": "redis", "redis": {"url_env": "REDIS_URL"}}
    settings = parse_settings({"tenants": {"a": {}}, "cache": cache})
    assert settings.cache.redis.resolved_url() == "rediss://:secret@redis.example:6380/0"

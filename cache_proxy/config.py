"""Typed settings: YAML validated at start; errors name the key and what is allowed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from cache_proxy.verify.policy import VerifyPolicy

DEFAULT_TENANT = "default"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Strict):
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_json_depth: int = Field(default=64, ge=4, le=1000)  # deeper: 400 naming the field
    max_messages: int = Field(default=2048, gt=0)  # a chat request with more: 400
    # A longer query text is matched exactly only, never tokenised: no 256-token window holds
    # it, and tokenising a megabyte costs a second of CPU.
    max_prompt_chars: int = Field(default=32_768, gt=0)
    # A connection whose request headers are not complete this long after it opened (or
    # after the request's first byte) is closed: slow-header clients cannot hold connections.
    header_timeout_s: float = Field(default=10.0, gt=0)
    # A client that declares a body and does not send it is cut off after this (408).
    body_timeout_s: float = Field(default=30.0, gt=0)
    # Above the clients' idle expiry (openai/httpx pools: 5 s), so a client never reuses a
    # connection the proxy is closing at that moment; nginx's default is 75 s.
    keep_alive_s: float = Field(default=75.0, gt=0)
    max_connections: int | None = Field(default=None, gt=0)  # beyond: 503 at once
    # SIGTERM: readiness goes false, open streams get this long to finish, then are ended.
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    # Only for deployments where the ingress authenticates and sets this header.
    trusted_tenant_header: str | None = None
    reload_interval_s: float = Field(default=2.0, gt=0)


class UpstreamSettings(Strict):
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    api_key_env: str | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=300.0, gt=0)
    max_connections: int = Field(default=256, gt=0)
    # The engine's identity beyond the served model name (which is part of every key): a
    # changed value starts a fresh cache space, so answers of old weights are never served.
    revision: str | None = None  # weights digest or the model's configured revision
    quantization: str | None = None
    chat_template_digest: str | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    def resolved_api_key(self) -> str | None:
        return _literal_or_env(self.api_key, self.api_key_env)


class EmbeddingSettings(Strict):
    model: str | None = None  # None: the packaged all-MiniLM-L6-v2
    # onnx: ONNX Runtime, same vectors (checked at export), ~2.7x faster per query here.
    backend: Literal["torch", "onnx"] = "onnx"
    onnx_dir: str | None = None  # None: a per-model directory under the user's cache
    max_batch_size: int = Field(default=32, gt=0)
    max_wait_ms: float = Field(default=0.0, ge=0)  # 0: batch what queued while busy
    # One thread: next to a busy engine, 2-thread OpenMP on 2 shared cores ran 30x slower
    # per query here; micro-batching, not threads, gives throughput.
    threads: int = Field(default=1, gt=0)


class RedisSettings(Strict):
    url: str | None = None  # redis://, rediss:// (TLS); a password goes in the URL
    url_env: str | None = None  # name of an env var holding the URL (Kubernetes: a Secret)
    key_prefix: str = Field(default="vsc:", min_length=1)
    # Every Redis call on the request path gives up after this; the request goes on without.
    timeout_s: float = Field(default=0.5, gt=0, le=30)
    # Cross-replica coalescing: the lease one replica holds on an in-flight miss (renewed while
    # the engine answers) and how long the others wait for its answer before their own call.
    lease_s: float = Field(default=10.0, gt=0)
    coalesce_wait_s: float = Field(default=60.0, ge=0)
    log_max_len: int = Field(default=100_000, ge=1000)  # change-log events kept per tenant

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    def resolved_url(self) -> str | None:
        return _literal_or_env(self.url, self.url_env)


IndexKind = Literal["auto", "flat", "ivf"]


@dataclass(frozen=True)
class IndexSettings:
    """How each partition's vectors are indexed (store/vector_index.py)."""

    kind: IndexKind = "auto"
    ivf_min_entries: int = 20_000  # auto: a partition this large switches from flat to IVF
    nprobe: int = 32  # IVF lists searched per query: the recall/speed knob


class CacheSettings(Strict):
    # embedded: entries in this process (optionally snapshotted); redis: shared by replicas.
    backend: Literal["embedded", "redis"] = "embedded"
    max_entries: int = Field(default=10_000, gt=0)
    # Per tenant and replica: LRU entries go once their estimated memory passes this
    # (text + vector + ~730 B of objects each). With redis, Redis itself is bounded by
    # max_entries (and its own maxmemory); this bounds each replica's mirror.
    max_bytes: int | None = Field(default=None, ge=1 << 20)
    # auto: exact (flat) per partition, switched to IVF beside it at ivf_min_entries.
    index: IndexKind = "auto"
    ivf_min_entries: int = Field(default=20_000, ge=1_000)
    ivf_nprobe: int = Field(default=32, ge=1, le=4_096)  # lists searched: recall vs speed
    top_k: int = Field(default=4, gt=0, le=64)
    snapshot_path: str | None = None  # embedded: entries survive restarts in this file
    snapshot_interval_s: float = Field(default=60.0, gt=0)
    sweep_interval_s: float = Field(default=5.0, gt=0)  # expired entries leave the index
    redis: RedisSettings = RedisSettings()

    def index_settings(self) -> IndexSettings:
        return IndexSettings(self.index, self.ivf_min_entries, self.ivf_nprobe)

    @model_validator(mode="after")
    def _redis_needs_url(self) -> CacheSettings:
        if self.backend == "redis" and not (self.redis.url or self.redis.url_env):
            raise ValueError("backend 'redis' needs cache.redis.url or cache.redis.url_env")
        return self


class AdminSettings(Strict):
    token: str | None = None
    token_env: str | None = None

    def resolved_token(self) -> str | None:
        return _literal_or_env(self.token, self.token_env)


DEFAULT_THRESHOLD = 0.95


class TenantSettings(Strict):
    api_keys: tuple[str, ...] = ()
    api_keys_env: tuple[str, ...] = ()
    threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0.0, le=1.0)
    # Entries expire this long after they are stored (None: never); a request's
    # `Cache-Control: max-age=N` may only shorten it.
    ttl_s: float | None = Field(default=None, gt=0)
    max_temperature: float | None = Field(default=None, ge=0.0)
    verify: VerifyPolicy = VerifyPolicy()
    # Send a request that missed the exact tier to the engine while the semantic lookup runs,
    # and abort it on a semantic hit: a miss no longer waits for the embedding, but every
    # semantic hit costs the engine the start of a request (prefill). For low hit rates.
    speculative_miss: bool = False

    def resolved_keys(self) -> tuple[str, ...]:
        from_env = (os.environ.get(name, "") for name in self.api_keys_env)
        return tuple(k for k in (*self.api_keys, *from_env) if k)


class Settings(Strict):
    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    cache: CacheSettings = CacheSettings()
    admin: AdminSettings = AdminSettings()
    tenants: dict[str, TenantSettings]
    # True only for the built-in defaults: one tenant that accepts any key (local dev).
    open_access: bool = False

    @field_validator("tenants")
    @classmethod
    def _at_least_one(cls, value: dict[str, TenantSettings]) -> dict[str, TenantSettings]:
        if not value:
            raise ValueError("at least one tenant is required")
        return value


class ConfigError(Exception):
    """The config file cannot be used; the message names the key and what is allowed."""


def _literal_or_env(literal: str | None, env_name: str | None) -> str | None:
    if literal:
        return literal
    return os.environ.get(env_name) if env_name else None


def default_settings(upstream_url: str = "http://127.0.0.1:8000") -> Settings:
    """Embedded defaults for local development: one tenant, any API key accepted."""
    return Settings(
        upstream=UpstreamSettings(url=upstream_url),
        admin=AdminSettings(token_env="CACHE_PROXY_ADMIN_TOKEN"),
        tenants={DEFAULT_TENANT: TenantSettings()},
        open_access=True,
    )


def parse_settings(raw: Any, source: str = "config") -> Settings:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping with 'upstream' and 'tenants'"
        )
    if "open_access" in raw:
        raise ConfigError(f"{source}: 'open_access' is not a config key")
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from exc


def load_settings(path: str | Path) -> Settings:
    text = Path(path).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_settings(raw, str(path))


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem: dotted key, then what is allowed."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        else:
            lines.append(f"'{key}': {err['msg']}")
    return "; ".join(lines)

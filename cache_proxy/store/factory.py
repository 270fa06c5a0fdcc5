"""The configured backend (`cache.backend`)."""

from __future__ import annotations

from cache_proxy.config import CacheSettings
from cache_proxy.metrics import Metrics
from cache_proxy.store.backend import CacheBackend
from cache_proxy.store.embedded import EmbeddedBackend
from cache_proxy.store.identity import CacheSpace


def build_backend(settings: CacheSettings, space: CacheSpace, metrics: Metrics) -> CacheBackend:
    if settings.backend == "redis":
        from cache_proxy.store.redis_backend import RedisBackend

        return RedisBackend(settings, space, metrics)
    metrics.shared_tier_up.set(1)
    return EmbeddedBackend(settings, space)

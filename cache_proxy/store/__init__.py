"""Cached entries per tenant: a local mirror (exact map, FAISS per partition, LRU, expiry)
behind a backend: embedded (this process, optional snapshot) or redis (shared by replicas)."""

from cache_proxy.store.backend import (
    CacheBackend,
    ExplorationLog,
    Lease,
    NoLease,
    OnlineVerdict,
    SharedUnavailable,
    Verdict,
    VerdictLog,
)
from cache_proxy.store.codec import StoredEntry
from cache_proxy.store.entry import Answer, Entry
from cache_proxy.store.identity import CacheSpace
from cache_proxy.store.tenant_cache import CacheStore, TenantCache

__all__ = [
    "Answer",
    "CacheBackend",
    "CacheSpace",
    "CacheStore",
    "Entry",
    "ExplorationLog",
    "Lease",
    "NoLease",
    "OnlineVerdict",
    "SharedUnavailable",
    "StoredEntry",
    "TenantCache",
    "Verdict",
    "VerdictLog",
]

"""Cached entries per tenant: exact map, FAISS index per partition, LRU bound."""

from cache_proxy.store.entry import Answer, Entry
from cache_proxy.store.tenant_cache import CacheStore, TenantCache

__all__ = ["Answer", "CacheStore", "Entry", "TenantCache"]

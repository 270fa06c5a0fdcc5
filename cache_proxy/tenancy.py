"""API key (or a trusted ingress header) -> the tenant whose policy and cache a request uses."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from cache_proxy.config import Settings, TenantSettings
from cache_proxy.errors import Unauthorized


@dataclass(frozen=True)
class Tenant:
    name: str
    policy: TenantSettings


class TenantDirectory:
    """Immutable snapshot of tenants; a reload swaps in a new one."""

    def __init__(self, settings: Settings) -> None:
        self._tenants = {name: Tenant(name, policy) for name, policy in settings.tenants.items()}
        self._by_key = {
            key: self._tenants[name]
            for name, policy in settings.tenants.items()
            for key in policy.resolved_keys()
        }
        self._open_access = settings.open_access
        header = settings.server.trusted_tenant_header
        self._trusted_header = header.lower() if header else None

    @property
    def names(self) -> list[str]:
        return list(self._tenants)

    def verifier_paths(self) -> set[str]:
        """Model directories of the verifiers enabled by any tenant."""
        return {
            verifier.model_path
            for tenant in self._tenants.values()
            if (verifier := tenant.policy.verify.verifier).enabled and verifier.model_path
        }

    def get(self, name: str) -> Tenant | None:
        return self._tenants.get(name)

    def resolve(self, headers: Mapping[str, str]) -> Tenant:
        if self._trusted_header and self._trusted_header in headers:
            return self._from_trusted_header(headers[self._trusted_header])
        if self._open_access:
            return next(iter(self._tenants.values()))
        return self._from_api_key(bearer_token(headers))

    def _from_trusted_header(self, name: str) -> Tenant:
        tenant = self._tenants.get(name.strip())
        if tenant is None:
            raise Unauthorized("Unknown tenant in the trusted tenant header.")
        return tenant

    def _from_api_key(self, key: str | None) -> Tenant:
        if not key:
            raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
        # compare_digest over every key keeps timing independent of which key matched.
        found = None
        for known, tenant in self._by_key.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                found = tenant
        if found is None:
            raise Unauthorized()
        return found


def bearer_token(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

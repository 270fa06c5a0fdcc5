from __future__ import annotations

import pytest

from cache_proxy.config import default_settings, parse_settings
from cache_proxy.errors import Unauthorized
from cache_proxy.tenancy import TenantDirectory

SETTINGS = parse_settings(
    {"tenants": {"acme": {"api_keys": ["k-a"]}, "globex": {"api_keys": ["k-g", "k-g2"]}}}
)


def test_keys_map_to_their_tenant() -> None:
    directory = TenantDirectory(SETTINGS)
    assert directory.resolve({"authorization": "Bearer k-a"}).name == "acme"
    assert directory.resolve({"authorization": "bearer k-g2"}).name == "globex"


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer k-x"}, {"authorization": "k-a"}, {"x-tenant-id": "acme"}],
)
def test_unknown_missing_or_malformed_keys_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        TenantDirectory(SETTINGS).resolve(headers)


def test_open_access_defaults_accept_any_key() -> None:
    directory = TenantDirectory(default_settings())
    assert directory.resolve({}).name == "default"
    assert directory.resolve({"authorization": "Bearer whatever"}).name == "default"

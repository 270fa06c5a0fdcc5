"""Reading a tenant's decision settings from the proxy config and writing calibrated ones back.

Writes go to a temporary file in the same directory and are renamed over the original, so the
proxy's hot reload never reads half a file. Other keys are kept as they are (YAML comments are
not preserved: PyYAML drops them).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from cache_proxy.config import DEFAULT_THRESHOLD
from cache_proxy.verify.policy import VerifyPolicy


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the top level must be a mapping")
    return raw


def tenant_settings(path: str | Path, tenant: str) -> tuple[float, VerifyPolicy]:
    """(threshold, verify policy) of one tenant, validated like the proxy does."""
    entry = (_read(Path(path)).get("tenants") or {}).get(tenant)
    if entry is None:
        raise KeyError(f"{path}: no tenant {tenant!r} under 'tenants'")
    threshold = float(entry.get("threshold", DEFAULT_THRESHOLD))
    return threshold, VerifyPolicy.model_validate(entry.get("verify") or {})


def write_tenant_settings(
    path: str | Path, tenant: str, threshold: float, policy: VerifyPolicy
) -> bool:
    """Sets threshold and verify for `tenant`; returns False when the tenant had to be created."""
    target = Path(path)
    raw = _read(target)
    tenants = raw.setdefault("tenants", {})
    existed = tenant in tenants
    entry = tenants.setdefault(tenant, {})
    entry["threshold"] = round(threshold, 4)
    entry["verify"] = policy.model_dump(mode="json")
    text = yaml.safe_dump(raw, sort_keys=False, default_flow_style=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, target)
    return existed

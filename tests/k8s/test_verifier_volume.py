"""Trained verifiers reach the proxy from a read-only PVC; a tenant cannot point outside it."""

from __future__ import annotations

import json

import pytest

from tests.k8s.chart import (
    containers,
    of_kind,
    pod_spec,
    proxy_config,
    render,
    try_template,
)
from tests.k8s.renders import STANDALONE

pytestmark = pytest.mark.k8s

MOUNT = "/opt/cache-proxy/verifiers"


def tenant_with_verifier(path: str) -> str:
    verifier = {"enabled": True, "model_path": path, "min_score": 0.8}
    return "json:tenants.acme=" + json.dumps({"threshold": 0.95, "verify": {"verifier": verifier}})


@pytest.mark.parametrize("topology", [(), STANDALONE], ids=["sidecar", "standalone"])
def test_claim_mounted_read_only_where_the_tenant_points(topology: tuple[str, ...]) -> None:
    sets = [*topology, "proxy.verifiers.existingClaim=trained", tenant_with_verifier(f"{MOUNT}/a")]
    docs = render(sets=sets)
    (proxy_pod,) = [d for d in of_kind(docs, "Deployment") if "proxy" in containers(d)]
    volumes = {v["name"]: v for v in pod_spec(proxy_pod)["volumes"]}
    assert volumes["verifiers"]["persistentVolumeClaim"] == {
        "claimName": "trained",
        "readOnly": True,
    }
    mounts = {m["name"]: m for m in containers(proxy_pod)["proxy"]["volumeMounts"]}
    assert mounts["verifiers"] == {"name": "verifiers", "mountPath": MOUNT, "readOnly": True}
    verify = proxy_config(docs)["tenants"]["acme"]["verify"]
    assert verify["verifier"]["model_path"] == f"{MOUNT}/a"


def test_no_claim_no_volume() -> None:
    (deployment,) = of_kind(render(), "Deployment")
    assert "verifiers" not in {v["name"] for v in pod_spec(deployment)["volumes"]}


def refused(sets: list[str]) -> str:
    result = try_template(sets)
    assert result.returncode != 0
    return result.stderr


def test_verifier_outside_the_mount_is_refused() -> None:
    sets = ["proxy.verifiers.existingClaim=trained", tenant_with_verifier("/models/acme")]
    assert "tenants.acme.verify.verifier.model_path" in refused(sets)


def test_verifier_without_a_claim_is_refused() -> None:
    message = refused([tenant_with_verifier(f"{MOUNT}/a")])
    assert "proxy.verifiers.existingClaim" in message and "tenants.acme" in message

"""Rendered manifests validated with kubernetes-validate --strict (schemas shipped with it).

ServiceMonitor is a CRD (monitoring.coreos.com/v1): kubernetes-validate has no schema for it, so
its ObjectMeta and LabelSelector are validated against the Kubernetes definitions and the rest
against the fields this chart sets (test_servicemonitor_structure). No other kind is skipped.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from tests.k8s.chart import Doc, named, of_kind, render, template_text
from tests.k8s.renders import RENDERS, STANDALONE

pytestmark = pytest.mark.k8s

# Oldest supported (Chart.yaml kubeVersion >=1.26) and a current release.
K8S_VERSIONS = ("1.26.0", "1.34.0")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"


def is_crd(doc: Doc) -> bool:
    return (doc["apiVersion"], doc["kind"]) in CRD_KINDS


@pytest.fixture(scope="module", params=list(RENDERS), ids=list(RENDERS))
def rendered(request: pytest.FixtureRequest) -> list[Doc]:
    values, sets = RENDERS[request.param]
    return render(values, sets)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_strict_schema_validation(rendered: list[Doc], version: str) -> None:
    errors = []
    for doc in rendered:
        if is_crd(doc):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']} {doc['metadata']['name']}: {path}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_every_non_crd_kind_has_a_schema(rendered: list[Doc]) -> None:
    """SchemaNotFoundError would mean a kind went unvalidated: fail instead of passing silently."""
    kinds = {(d["apiVersion"], d["kind"]) for d in rendered if not is_crd(d)}
    for api_version, kind in kinds:
        doc = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
        # ValidationError means the schema was found (the stub object is incomplete);
        # SchemaNotFoundError propagates and fails the test.
        with contextlib.suppress(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def test_cli_strict_on_default_render(tmp_path: Path) -> None:
    """The kubernetes-validate command itself, as a user would run it on the rendered output."""
    out = tmp_path / "default.yaml"
    text = template_text()
    out.write_text(text)
    count = len([doc for doc in yaml.safe_load_all(text) if doc])
    cli = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(cli), "--strict", "-k", K8S_VERSIONS[-1], str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == count, result.stdout


def test_validation_can_fail() -> None:
    """The strict schema rejects a field a Deployment does not have (the check is not a no-op)."""
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [], "gpus": 1}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


# ---------------------------------------------------------------- ServiceMonitor (CRD) ----------


def k8s_definition_validator(name: str) -> jsonschema.Draft202012Validator:
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = schemas / f"v{K8S_VERSIONS[-1]}-local-strict" / "_definitions.json"
    definitions: dict[str, Any] = json.loads(path.read_text())
    resource = Resource.from_contents(definitions)
    registry: Registry = Registry().with_resource(DEFINITIONS_ID, resource)
    schema = {"$ref": f"{DEFINITIONS_ID}#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


# prometheus-operator's Duration pattern.
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
ENDPOINT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": DURATION},
        "scrapeTimeout": {"type": "string", "pattern": DURATION},
    },
}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object"},
                "endpoints": {"type": "array", "minItems": 1, "items": ENDPOINT_SCHEMA},
            },
        },
    },
}


@pytest.mark.parametrize("topology_sets", [(), STANDALONE], ids=["sidecar", "standalone"])
def test_servicemonitor_structure(topology_sets: tuple[str, ...]) -> None:
    docs = render(sets=("serviceMonitor.enabled=true", *topology_sets))
    (monitor,) = of_kind(docs, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    k8s_definition_validator("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").validate(
        monitor["metadata"]
    )
    selector = monitor["spec"]["selector"]
    k8s_definition_validator("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector").validate(
        selector
    )
    # It must select the proxy Service, and every endpoint port must be a named port there.
    wanted = selector["matchLabels"]
    services = [
        s for s in of_kind(docs, "Service") if wanted.items() <= s["metadata"]["labels"].items()
    ]
    assert named(docs, "Service", monitor["metadata"]["name"]) in services
    for endpoint in monitor["spec"]["endpoints"]:
        for service in services:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}

"""Helpers for the chart tests: run the real helm binary, parse what it renders."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "k8s" / "chart"
EXAMPLES = sorted((REPO / "k8s" / "examples").glob("*.yaml"))
MANIFESTS = REPO / "k8s" / "manifests"
RELEASE = "vsc"  # the fixed release name of k8s/manifests/*.yaml
NAMESPACE = "default"
FULLNAME = f"{RELEASE}-vllm-semantic-cache"

Doc = dict[str, Any]


def helm_path() -> Path | None:
    """build/tools/helm (make helm), else HELM or a helm on PATH."""
    local = REPO / "build" / "tools" / "helm"
    if local.is_file():
        return local
    found = os.environ.get("HELM") or shutil.which("helm")
    return Path(found) if found else None


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = helm_path()
    assert binary is not None, "helm not installed: run `make helm`"
    result = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def value_args(values: Iterable[Path | str] = (), sets: Iterable[str] = ()) -> list[str]:
    """-f for each file; --set for each item, --set-json for items starting with "json:".

    helm's --set types only integers: `threshold=0.8` arrives as the string "0.8" (and the
    schema rejects it), so floats go through --set-json, as a user would pass them.
    """
    args: list[str] = []
    for path in values:
        args += ["-f", str(path)]
    for item in sets:
        if item.startswith("json:"):
            args += ["--set-json", item.removeprefix("json:")]
        else:
            args += ["--set", item]
    return args


def template_text(values: Iterable[Path | str] = (), sets: Iterable[str] = (), *extra: str) -> str:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    return helm(*args, *value_args(values, sets), *extra).stdout


def try_template(sets: Iterable[str]) -> subprocess.CompletedProcess[str]:
    """`helm template` that may fail (a refused value): the caller reads returncode/stderr."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *value_args(sets=sets)]
    return helm(*args, check=False)


def render(values: Iterable[Path | str] = (), sets: Iterable[str] = ()) -> list[Doc]:
    """Rendered objects (tests hooks included), in helm's order."""
    text = template_text(values, sets)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def containers(deployment: Doc) -> dict[str, Doc]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def pod_spec(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def engine_deployment(docs: list[Doc]) -> Doc:
    """The Deployment whose pods run the engine container."""
    found = [d for d in of_kind(docs, "Deployment") if "engine" in containers(d)]
    assert len(found) == 1, f"expected one engine Deployment, found {len(found)}"
    return found[0]


def proxy_config(docs: list[Doc]) -> Doc:
    config_map = named(docs, "ConfigMap", FULLNAME)
    parsed: Doc = yaml.safe_load(config_map["data"]["config.yaml"])
    return parsed


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)
    elif isinstance(node, str):
        yield node

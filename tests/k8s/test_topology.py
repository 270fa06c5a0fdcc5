"""Sidecar vs standalone topology: which pods run what, and where the proxy sends requests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.chart import (
    FULLNAME,
    containers,
    engine_deployment,
    helm,
    named,
    of_kind,
    pod_spec,
    proxy_config,
    render,
    value_args,
)
from tests.k8s.renders import STANDALONE

pytestmark = pytest.mark.k8s
ENGINE = f"{FULLNAME}-engine"


def selects(service: dict[str, Any], deployment: dict[str, Any]) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return bool(service["spec"]["selector"].items() <= labels.items())


def test_sidecar_runs_engine_and_proxy_in_one_pod() -> None:
    docs = render()
    (deployment,) = of_kind(docs, "Deployment")
    assert list(containers(deployment)) == ["engine", "proxy"]
    assert [s["metadata"]["name"] for s in of_kind(docs, "Service")] == [FULLNAME]
    assert proxy_config(docs)["upstream"]["url"] == "http://127.0.0.1:8000"
    assert selects(named(docs, "Service", FULLNAME), deployment)


def test_sidecar_upstream_follows_the_engine_port() -> None:
    docs = render(sets=["engine.config.port=8011"])
    assert proxy_config(docs)["upstream"]["url"] == "http://127.0.0.1:8011"
    ports = containers(engine_deployment(docs))["engine"]["ports"]
    assert ports[0]["containerPort"] == 8011


def test_standalone_puts_the_proxy_in_front_of_an_engine_service() -> None:
    docs = render(sets=STANDALONE)
    proxy = named(docs, "Deployment", FULLNAME)
    engine = named(docs, "Deployment", ENGINE)
    assert list(containers(proxy)) == ["proxy"]
    assert list(containers(engine)) == ["engine"]
    engine_service = named(docs, "Service", ENGINE)
    front = named(docs, "Service", FULLNAME)
    assert selects(engine_service, engine) and not selects(engine_service, proxy)
    assert selects(front, proxy) and not selects(front, engine)
    assert proxy_config(docs)["upstream"]["url"] == f"http://{ENGINE}:8000"
    assert engine_service["spec"]["ports"][0]["targetPort"] == "engine"
    # GPU scheduling goes to the engine pods only.
    assert "tolerations" in pod_spec(engine) and "tolerations" not in pod_spec(proxy)


def test_standalone_rejects_a_loopback_engine() -> None:
    result = helm(
        "template", "x", "k8s/chart", *value_args(sets=["topology=standalone"]), check=False
    )
    assert result.returncode != 0
    assert "must not be loopback" in result.stderr


def test_explicit_upstream_url_wins() -> None:
    docs = render(sets=["proxy.config.upstream.url=http://vllm.other-ns:8000"])
    assert proxy_config(docs)["upstream"]["url"] == "http://vllm.other-ns:8000"


@pytest.mark.parametrize("sets", [(), STANDALONE], ids=["sidecar", "standalone"])
def test_probes_fit_the_containers(sets: tuple[str, ...]) -> None:
    docs = render(sets=sets)
    engine = containers(engine_deployment(docs))["engine"]
    startup = engine["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60  # slow model load
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        text = str(engine[probe])
        assert "/health" in text
    proxy = containers(named(docs, "Deployment", FULLNAME))["proxy"]
    assert proxy["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert proxy["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert proxy["ports"][0]["containerPort"] == 8080


def test_loopback_engine_is_probed_from_inside_the_pod() -> None:
    """kubelet probes hit the pod IP; an engine on 127.0.0.1 is probed by exec instead."""
    loopback = containers(engine_deployment(render()))["engine"]
    assert "exec" in loopback["startupProbe"] and "httpGet" not in loopback["startupProbe"]
    public = containers(engine_deployment(render(sets=["engine.config.host=0.0.0.0"])))["engine"]
    assert public["startupProbe"]["httpGet"] == {"path": "/health", "port": 8000}


def test_service_maps_port_80_to_the_proxy() -> None:
    service = named(render(), "Service", FULLNAME)
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


def test_proxy_listens_on_all_interfaces_with_the_mounted_config() -> None:
    proxy = containers(engine_deployment(render()))["proxy"]
    args = proxy["args"]
    assert args[args.index("--config") + 1] == "/etc/cache-proxy/config.yaml"
    assert args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--port") + 1] == "8080"
    mount = next(m for m in proxy["volumeMounts"] if m["name"] == "proxy-config")
    # A subPath mount would never see ConfigMap updates, so tenants could not hot-reload.
    assert mount == {"name": "proxy-config", "mountPath": "/etc/cache-proxy", "readOnly": True}


def test_proxy_args_parse_with_the_proxy_cli() -> None:
    cli = pytest.importorskip("cache_proxy.cli")
    proxy = containers(engine_deployment(render()))["proxy"]
    assert proxy["command"] == ["cache-proxy"]
    parsed = cli.build_parser().parse_args(proxy["args"])
    assert (parsed.command, str(parsed.config), parsed.host, parsed.port) == (
        "serve",
        "/etc/cache-proxy/config.yaml",
        "0.0.0.0",
        8080,
    )

"""Graceful drain: the proxy's preStop wait, then SIGTERM and its shutdown grace, all inside the
pod's terminationGracePeriodSeconds (computed from the rendered objects, both topologies)."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import yaml

from tests.k8s.chart import (
    CHART,
    FULLNAME,
    Doc,
    containers,
    engine_deployment,
    named,
    of_kind,
    pod_spec,
    proxy_config,
    render,
    try_template,
)
from tests.k8s.renders import STANDALONE

pytestmark = pytest.mark.k8s

MARGIN_S = 5
TOPOLOGIES = pytest.mark.parametrize("topology", [(), STANDALONE], ids=["sidecar", "standalone"])
SLEEP = re.compile(r"^import time; time\.sleep\((\d+)\)$")


def proxy_deployment(docs: list[Doc]) -> Doc:
    (deployment,) = [d for d in of_kind(docs, "Deployment") if "proxy" in containers(d)]
    return deployment


def pre_stop_seconds(container: Doc) -> int:
    """The seconds a container's preStop waits (0 without one)."""
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0
    command = hook["exec"]["command"]
    assert command[:2] == ["python3", "-c"], command
    match = SLEEP.match(command[2])
    assert match, command
    return int(match.group(1))


def grace(deployment: Doc) -> int:
    seconds: int = pod_spec(deployment)["terminationGracePeriodSeconds"]
    return seconds


def drain_need(docs: list[Doc]) -> int:
    """What the proxy pod must be given: its preStop + the proxy's shutdown grace + a margin."""
    proxy = containers(proxy_deployment(docs))["proxy"]
    shutdown = float(proxy_config(docs)["server"]["shutdown_grace_s"])
    return pre_stop_seconds(proxy) + math.ceil(shutdown) + MARGIN_S


# --------------------------------------------------------------------------- preStop -----


@TOPOLOGIES
@pytest.mark.parametrize("seconds", [None, 12])
def test_proxy_pre_stop_waits_the_configured_seconds(
    topology: tuple[str, ...], seconds: int | None
) -> None:
    sets = [*topology] + ([] if seconds is None else [f"proxy.drain.preStopSeconds={seconds}"])
    proxy = containers(proxy_deployment(render(sets=sets)))["proxy"]
    assert pre_stop_seconds(proxy) == (5 if seconds is None else seconds)


@TOPOLOGIES
def test_no_pre_stop_with_zero_seconds(topology: tuple[str, ...]) -> None:
    docs = render(sets=[*topology, "proxy.drain.preStopSeconds=0"])
    assert "lifecycle" not in containers(proxy_deployment(docs))["proxy"]
    assert grace(proxy_deployment(docs)) >= drain_need(docs)


@pytest.mark.parametrize(
    "sets",
    [
        (),
        ("proxy.drain.preStopSeconds=8", "json:proxy.config.server.shutdown_grace_s=45.5"),
        ("proxy.drain.preStopSeconds=0",),
    ],
    ids=["default", "longer", "no-prestop"],
)
def test_sidecar_engine_outlives_the_proxys_drain(sets: tuple[str, ...]) -> None:
    """The engine's SIGTERM comes only after the proxy's open requests had their grace."""
    docs = render(sets=sets)
    pod = containers(engine_deployment(docs))
    shutdown = proxy_config(docs)["server"]["shutdown_grace_s"]
    assert pre_stop_seconds(pod["engine"]) == pre_stop_seconds(pod["proxy"]) + math.ceil(shutdown)


def test_standalone_engine_pods_have_no_proxy_drain() -> None:
    docs = render(sets=STANDALONE)
    engine = engine_deployment(docs)
    assert "lifecycle" not in containers(engine)["engine"]
    assert grace(engine) == 60  # engine.terminationGracePeriodSeconds as set


# ----------------------------------------------------- terminationGracePeriodSeconds -----

GRACE_CASES = {
    "default": (),
    "long shutdown grace": ("json:proxy.config.server.shutdown_grace_s=100.5",),
    "long preStop": ("proxy.drain.preStopSeconds=90",),
    "no shutdown grace": ("proxy.config.server.shutdown_grace_s=0",),
    "small engine grace": ("engine.terminationGracePeriodSeconds=10",),
}


@TOPOLOGIES
@pytest.mark.parametrize("sets", list(GRACE_CASES.values()), ids=list(GRACE_CASES))
def test_grace_period_covers_pre_stop_and_shutdown_grace(
    topology: tuple[str, ...], sets: tuple[str, ...]
) -> None:
    docs = render(sets=[*topology, *sets])
    assert grace(proxy_deployment(docs)) >= drain_need(docs)


@pytest.mark.parametrize("engine_grace", [10, 60, 600])
def test_sidecar_grace_is_the_larger_of_the_engines_and_the_proxys_need(
    engine_grace: int,
) -> None:
    docs = render(sets=[f"engine.terminationGracePeriodSeconds={engine_grace}"])
    assert grace(engine_deployment(docs)) == max(engine_grace, drain_need(docs))


def test_sidecar_grace_follows_a_long_shutdown_grace() -> None:
    docs = render(sets=["proxy.config.server.shutdown_grace_s=120"])
    assert grace(engine_deployment(docs)) == 5 + 120 + MARGIN_S


def test_standalone_proxy_grace_is_computed() -> None:
    docs = render(sets=[*STANDALONE, "json:proxy.config.server.shutdown_grace_s=30.2"])
    assert grace(named(docs, "Deployment", FULLNAME)) == 5 + 31 + MARGIN_S


def test_standalone_explicit_grace_is_kept_when_it_covers_the_drain() -> None:
    docs = render(sets=[*STANDALONE, "proxy.terminationGracePeriodSeconds=300"])
    assert grace(named(docs, "Deployment", FULLNAME)) == 300


@pytest.mark.parametrize(
    "sets",
    [
        ("proxy.terminationGracePeriodSeconds=29",),  # need: 5 + 20 + 5 = 30
        ("proxy.terminationGracePeriodSeconds=60", "proxy.config.server.shutdown_grace_s=60"),
        ("proxy.terminationGracePeriodSeconds=0",),
    ],
    ids=["one short", "below a raised shutdown grace", "zero"],
)
def test_standalone_explicit_grace_below_the_drain_is_refused(sets: tuple[str, ...]) -> None:
    result = try_template([*STANDALONE, *sets])
    assert result.returncode != 0, "rendered, expected a refusal"
    assert "proxy.terminationGracePeriodSeconds" in result.stderr, result.stderr
    assert "shutdown_grace_s" in result.stderr and "preStopSeconds" in result.stderr


# ------------------------------------------------------------------ server defaults -----


def test_values_server_defaults_are_the_proxys() -> None:
    """proxy.config.server in values.yaml states the proxy's own defaults (ServerSettings)."""
    config = pytest.importorskip("cache_proxy.config")
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    server = values["proxy"]["config"]["server"]
    fields = config.ServerSettings.model_fields
    for key in (
        "body_timeout_s",
        "keep_alive_s",
        "max_connections",
        "shutdown_grace_s",
        "max_json_depth",
        "max_messages",
    ):
        assert key in server, key
    for key, value in server.items():
        assert value == fields[key].default, key


def test_rendered_server_settings_load_in_the_proxy() -> None:
    config = pytest.importorskip("cache_proxy.config")
    docs = render(
        sets=[
            "proxy.config.server.max_connections=512",
            "json:proxy.config.server.keep_alive_s=90.5",
            "proxy.config.server.max_json_depth=32",
        ]
    )
    settings = config.parse_settings(proxy_config(docs), "ConfigMap")
    assert settings.server.max_connections == 512
    assert settings.server.keep_alive_s == 90.5
    assert settings.server.max_json_depth == 32
    assert settings.server.shutdown_grace_s == 20

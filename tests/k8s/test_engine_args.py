"""The engine container gets its args and env from `engine.config` exactly as engine/config.py
builds them for the local runner (`python -m engine.config --config FILE --format args|json`)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import CHART, EXAMPLES, REPO, containers, engine_deployment, render

pytestmark = pytest.mark.k8s

ENGINE_CONFIGS = sorted((REPO / "engine" / "configs").glob("*.yaml"))
# Example values file -> the engine config file it must mirror (same model on the same GPUs).
EXAMPLE_ENGINE_CONFIG = {
    "gpu-l4-awq.yaml": "gpu-awq.yaml",
    "gpu-h100-tp2.yaml": "gpu-tp2.yaml",
    "gpu-multi-replica-redis.yaml": "gpu-awq.yaml",
}


def engine_cli(config: Path, output_format: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "engine.config", "--config", str(config), "--format", output_format],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def engine_container(config: Path, tmp_path: Path) -> dict[str, Any]:
    """Renders the chart with the engine config file as engine.config (no extra engine env)."""
    values = {"engine": {"config": yaml.safe_load(config.read_text()), "env": None}}
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    container: dict[str, Any] = containers(engine_deployment(render([values_file])))["engine"]
    return container


def test_there_are_engine_configs() -> None:
    if not ENGINE_CONFIGS:
        pytest.fail("engine/configs/*.yaml missing: nothing to compare the chart's args with")


@pytest.mark.parametrize("config", ENGINE_CONFIGS, ids=lambda p: p.name)
def test_args_equal_engine_config_cli(config: Path, tmp_path: Path) -> None:
    expected = shlex.split(engine_cli(config, "args"))
    assert engine_container(config, tmp_path)["args"] == expected


@pytest.mark.parametrize("config", ENGINE_CONFIGS, ids=lambda p: p.name)
def test_env_equals_engine_config_cli(config: Path, tmp_path: Path) -> None:
    expected: dict[str, str] = json.loads(engine_cli(config, "json"))["env"]
    env = {e["name"]: e["value"] for e in engine_container(config, tmp_path)["env"]}
    assert {k: env.get(k) for k in expected} == expected
    # The chart adds only HF_HOME (the model volume's Hugging Face cache).
    assert set(env) - set(expected) == {"HF_HOME"}


def test_engine_env_override_replaces_the_chart_value() -> None:
    env = containers(engine_deployment(render()))["engine"]["env"]
    names = [e["name"] for e in env]
    assert names.count("HF_HUB_OFFLINE") == 1
    assert {e["name"]: e["value"] for e in env}["HF_HUB_OFFLINE"] == "0"  # values.yaml default


def test_default_args_equal_cli_for_the_default_values(tmp_path: Path) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["engine"]["config"]
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(yaml.safe_dump(defaults))
    args = containers(engine_deployment(render()))["engine"]["args"]
    assert args == shlex.split(engine_cli(config_file, "args"))


def test_values_engine_config_has_the_engine_schema_and_its_defaults() -> None:
    from engine.config import EngineConfig

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["engine"]["config"]
    assert set(defaults) == set(EngineConfig.model_fields)
    for name, field in EngineConfig.model_fields.items():
        if not field.is_required():
            assert defaults[name] == field.default, name
    schema = json.loads((CHART / "values.schema.json").read_text())
    config_schema = schema["properties"]["engine"]["properties"]["config"]
    assert set(config_schema["properties"]) == set(EngineConfig.model_fields)
    assert config_schema["additionalProperties"] is False


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_engine_config_is_valid_for_engine_config(example: Path, tmp_path: Path) -> None:
    config = yaml.safe_load(example.read_text())["engine"]["config"]
    config_file = tmp_path / "engine.yaml"
    config_file.write_text(yaml.safe_dump(config))
    engine_cli(config_file, "args")  # the engine's own loader accepts it
    if example.name in EXAMPLE_ENGINE_CONFIG:
        source = REPO / "engine" / "configs" / EXAMPLE_ENGINE_CONFIG[example.name]
        assert config == yaml.safe_load(source.read_text())

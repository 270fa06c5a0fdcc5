"""engine.config.quantization reaches vLLM as `--quantization <value>` (absent for none), for every
value engine/config.py allows and in every example, and the chart documents the same values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import pytest
import yaml

from engine.config import Quantization
from tests.k8s.chart import (
    CHART,
    EXAMPLES,
    REPO,
    containers,
    engine_deployment,
    proxy_config,
    render,
)

pytestmark = pytest.mark.k8s

VALUES = list(get_args(Quantization))


def quantization_args(args: list[str]) -> list[str]:
    """The --quantization flag and its value as rendered ([] when absent)."""
    positions = [i for i, arg in enumerate(args) if arg == "--quantization"]
    assert len(positions) <= 1, args
    return args[positions[0] : positions[0] + 2] if positions else []


def test_values_are_the_engine_config_values() -> None:
    assert VALUES[0] == "none"
    assert set(VALUES) == {"none", "awq", "gptq", "compressed-tensors"}
    schema = json.loads((CHART / "values.schema.json").read_text())
    config = schema["properties"]["engine"]["properties"]["config"]["properties"]
    assert config["quantization"]["enum"] == VALUES


@pytest.mark.parametrize("value", VALUES)
def test_quantization_value_becomes_the_vllm_flag(value: str) -> None:
    docs = render(sets=[f"engine.config.quantization={value}"])
    args = containers(engine_deployment(docs))["engine"]["args"]
    expected = [] if value == "none" else ["--quantization", value]
    assert quantization_args(args) == expected
    if expected:  # engine/config.py's order: after the GPU memory flag, before --host
        assert args.index("--quantization") == args.index("--host") - 2
    assert proxy_config(docs)["upstream"]["quantization"] == value


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_quantization_reaches_vllm(example: Path) -> None:
    value = yaml.safe_load(example.read_text())["engine"]["config"]["quantization"]
    assert value in VALUES
    docs = render([example])
    args = containers(engine_deployment(docs))["engine"]["args"]
    assert quantization_args(args) == ([] if value == "none" else ["--quantization", value])
    assert proxy_config(docs)["upstream"]["quantization"] == value


def test_values_yaml_documents_every_value() -> None:
    text = (CHART / "values.yaml").read_text()
    match = re.search(r"#\s*quantization:\s*([a-z-]+(?:\s*\|\s*[a-z-]+)*)", text)
    assert match, "values.yaml: no `# quantization: none | ...` comment at engine.config"
    assert [v.strip() for v in match.group(1).split("|")] == VALUES


def test_readme_has_a_quantized_models_section_naming_every_value() -> None:
    readme = (REPO / "k8s" / "README.md").read_text()
    assert "\n## Quantized models\n" in readme
    section = readme.split("\n## Quantized models\n", 1)[1].split("\n## ", 1)[0]
    for value in VALUES:
        assert f"`{value}`" in section, value
    for kernel in ("Marlin", "Machete", "CPUWNA16LinearKernel"):
        assert kernel in section, kernel

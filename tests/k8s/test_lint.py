"""`helm lint --strict` for the default values and every example values file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.k8s.chart import CHART, EXAMPLES, helm, value_args
from tests.k8s.renders import ALL_ON, STANDALONE

pytestmark = pytest.mark.k8s


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLES}
    assert {
        "gpu-l4-awq.yaml",
        "gpu-h100-tp2.yaml",
        "gpu-multi-replica-redis.yaml",
        "cpu-dev.yaml",
    } <= names


def test_lint_default_values() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", EXAMPLES, ids=lambda p: p.name)
def test_lint_example(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("sets", [ALL_ON, ALL_ON + STANDALONE], ids=["sidecar", "standalone"])
def test_lint_with_every_option_on(sets: tuple[str, ...]) -> None:
    result = helm("lint", "--strict", str(CHART), *value_args(sets=sets))
    assert "0 chart(s) failed" in result.stdout


def test_lint_fails_on_bad_values() -> None:
    """The lint is able to fail: a wrong type makes it exit non-zero."""
    result = helm("lint", "--strict", str(CHART), "--set", "engine.replicas=many", check=False)
    assert result.returncode != 0

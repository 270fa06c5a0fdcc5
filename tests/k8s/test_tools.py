"""NOTES.txt renders for every values set; the helm installer is idempotent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.k8s.chart import CHART, EXAMPLES, REPO, helm, helm_path

pytestmark = pytest.mark.k8s


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=lambda p: p.name if p else "default")
def test_notes_render(values: Path | None) -> None:
    args = ["install", "vsc", str(CHART), "--dry-run=client", "--namespace", "llm"]
    if values:
        args += ["-f", str(values)]
    notes = helm(*args).stdout.split("NOTES:", 1)[1]
    assert "helm test vsc -n llm" in notes
    assert "vsc-vllm-semantic-cache-keys" in notes
    assert "<no value>" not in notes


def test_install_helm_is_idempotent() -> None:
    """A second run finds the pinned helm in place and downloads nothing."""
    binary = helm_path()
    assert binary is not None
    if binary != REPO / "build" / "tools" / "helm":
        pytest.skip("helm does not come from build/tools (installed another way)")
    result = subprocess.run(
        ["bash", str(REPO / "k8s" / "tools" / "install-helm.sh"), str(binary.parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "helm already installed: v4." in result.stdout
    assert "fetching" not in result.stdout

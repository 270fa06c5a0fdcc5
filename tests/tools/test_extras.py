"""A tool whose extra is missing fails with one line naming the pip install that fixes it."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from cache_proxy.cli import main
from cache_tools import commands

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_a_missing_extra_names_the_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a)
    )
    pairs = tmp_path / "pairs.jsonl"
    assert main(["train-verifier", "--pairs", str(pairs), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "cache-proxy train-verifier: needs sklearn: pip install 'vllm-semantic-cache[train]'"
    )


def test_every_extra_the_commands_name_exists_in_pyproject() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert set(commands.EXTRAS) <= set(extras)
    core = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert not [d for d in core if d.split("=")[0].split(">")[0] in ("torch", "scikit-learn")]

from __future__ import annotations

from pathlib import Path

import pytest

from cache_proxy.cli import build_parser, main


def test_bad_config_refuses_to_start_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("upstream: {url: http://x}\ntenants: {acme: {threshold: 0.9, keys: [a]}}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "unknown key 'tenants.acme.keys'" in capsys.readouterr().err


def test_upstream_flag_only_without_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("tenants: {acme: {}}\n")
    assert main(["serve", "--config", str(path), "--upstream", "http://y"]) == 2
    assert "upstream.url" in capsys.readouterr().err


def test_serve_defaults() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.config) == ("127.0.0.1", 8080, None)


def test_export_embedder_to_an_unwritable_place_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["export-embedder", "--out", str(blocker / "export")]) == 2
    assert "embedding.onnx_dir" in capsys.readouterr().err

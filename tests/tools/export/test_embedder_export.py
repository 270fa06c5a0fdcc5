"""cache_tools' embedder export: verified against torch, atomic, kept when current."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cache_proxy.embedding.layout import META_FILE, MODEL_FILE, is_exported, read_meta
from cache_proxy.embedding.loader import packaged_model_path

pytest.importorskip("torch")  # the [export] extra
from cache_tools.export.embedder import ExportError, ensure_export, export_onnx


def test_a_current_export_is_kept_and_a_partial_one_remade(
    onnx_export_dir: str, tmp_path: Path
) -> None:
    directory = Path(onnx_export_dir)
    stamp = (directory / MODEL_FILE).stat().st_mtime_ns
    assert ensure_export(packaged_model_path(), directory) == directory
    assert (directory / MODEL_FILE).stat().st_mtime_ns == stamp  # reused, not re-exported

    partial = tmp_path / "partial"
    shutil.copytree(directory, partial)
    (partial / MODEL_FILE).unlink()
    assert not is_exported(partial)
    ensure_export(packaged_model_path(), partial)
    assert is_exported(partial)


def test_an_export_of_other_weights_is_replaced(onnx_export_dir: str, tmp_path: Path) -> None:
    stale = tmp_path / "export"
    shutil.copytree(onnx_export_dir, stale)
    meta = read_meta(stale)
    (stale / META_FILE).write_text(json.dumps({**meta, "source_digest": "0" * 16}))
    ensure_export(packaged_model_path(), stale)
    assert read_meta(stale)["source_digest"] == meta["source_digest"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".export-", ".retired-"))]


def test_unsupported_pooling_is_refused_by_name(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(packaged_model_path(), model)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    pooling.write_text(json.dumps(config))
    with pytest.raises(ExportError, match="pooling 'max'"):
        export_onnx(str(model), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]

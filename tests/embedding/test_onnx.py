from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.loader import ensure_onnx_export, load_embedder
from cache_proxy.embedding.onnx import OnnxEmbedder
from cache_proxy.embedding.onnx_export import (
    ExportError,
    default_export_dir,
    export_onnx,
    is_exported,
)
from cache_proxy.embedding.sentence import SentenceTransformerEmbedder, packaged_model_path

TEXTS = [
    "How do I reset my password?",
    "How can I reset my password?",
    "What is 2 + 2?",
    "",
    "   leading and trailing   ",
    "Straße, café, 東京, emoji 🚀",
    "token " * 400,  # past the 256-token window
    "a",
]


@pytest.fixture(scope="module")
def torch_embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(packaged_model_path())


def test_onnx_vectors_equal_the_torch_models(
    embedder: Embedder, torch_embedder: SentenceTransformerEmbedder
) -> None:
    assert isinstance(embedder, OnnxEmbedder)  # the default backend
    onnx = embedder.encode(TEXTS)
    reference = torch_embedder.encode(TEXTS)
    assert onnx.shape == reference.shape == (len(TEXTS), 384)
    assert onnx.dtype == np.float32
    assert float(np.abs(onnx - reference).max()) < 1e-5
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)


def test_batch_order_does_not_change_vectors(embedder: Embedder) -> None:
    together = embedder.encode(TEXTS)
    one_by_one = np.vstack([embedder.encode([text]) for text in TEXTS])
    assert float(np.abs(together - one_by_one).max()) < 1e-5


def test_fits_agrees_with_the_torch_tokenizer(
    embedder: Embedder, torch_embedder: SentenceTransformerEmbedder
) -> None:
    for words in (10, 120, 253, 254, 255, 300):
        text = "token " * words
        assert embedder.fits(text) == torch_embedder.fits(text), words
    assert embedder.fits("short")
    assert not embedder.fits("token " * 300)


def test_export_is_reused_and_a_missing_file_triggers_a_new_one(
    onnx_export_dir: str, tmp_path: Path, embedder: Embedder
) -> None:
    directory = Path(onnx_export_dir)
    assert is_exported(directory)
    stamp = (directory / "model.onnx").stat().st_mtime_ns
    assert ensure_onnx_export(packaged_model_path(), onnx_export_dir) == directory
    assert (directory / "model.onnx").stat().st_mtime_ns == stamp  # reused, not re-exported

    partial = tmp_path / "partial"
    shutil.copytree(directory, partial)
    (partial / "model.onnx").unlink()
    assert not is_exported(partial)
    shutil.rmtree(partial)
    ensure_onnx_export(packaged_model_path(), str(partial))
    assert is_exported(partial)


def test_unwritable_export_dir_names_the_config_key(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=r"embedding\.onnx_dir"):
        load_embedder(EmbeddingSettings(onnx_dir=str(blocker / "export")))


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


def test_default_dir_follows_the_model_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_PROXY_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    first = default_export_dir(str(model))
    assert first.parent == tmp_path / "cache" / "onnx"
    (model / "config.json").write_text('{"changed": true}')
    assert default_export_dir(str(model)) != first


def test_a_concurrent_export_that_finished_first_is_kept(
    onnx_export_dir: str, tmp_path: Path, embedder: Embedder
) -> None:
    winner = tmp_path / "export"
    shutil.copytree(onnx_export_dir, winner)
    stamp = (winner / "model.onnx").stat().st_mtime_ns
    export_onnx(packaged_model_path(), winner)  # lost the race: no error, the winner stays
    assert (winner / "model.onnx").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export-")]

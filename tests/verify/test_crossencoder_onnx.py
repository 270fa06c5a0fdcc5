"""The cross-encoder's ONNX export: made at training, scores like torch, refreshed on retrain."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache_proxy.embedding.sentence import packaged_model_path
from cache_proxy.verify import crossencoder_onnx as onnx
from cache_proxy.verify import verifier as verifier_module
from cache_proxy.verify.crossencoder import CrossEncoderVerifier, train_cross_encoder
from cache_proxy.verify.decision import Candidate
from cache_proxy.verify.verifier import forget_verifiers, load_verifier
from tests.verify.test_verifiers import DIFFERENT, EXAMPLES, SAME

PAIRS = [(q, Candidate(i, c, 0.9)) for i, (q, c) in enumerate(SAME + DIFFERENT)]
LONG = ("why " * 300, Candidate(99, "because " * 300, 0.9))  # truncated on both sides


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ce") / "ce"
    train_cross_encoder(EXAMPLES * 2, out, packaged_model_path(), batch_size=8)
    return out


def test_training_leaves_a_current_export(trained: Path) -> None:
    assert onnx.export_is_current(trained)
    forget_verifiers()
    assert isinstance(load_verifier(str(trained)), onnx.OnnxCrossEncoder)


def test_onnx_scores_equal_torch_scores(trained: Path) -> None:
    on_torch = CrossEncoderVerifier(trained).score_pairs([*PAIRS, LONG])
    on_onnx = onnx.OnnxCrossEncoder(trained / onnx.EXPORT_DIR).score_pairs([*PAIRS, LONG])
    assert on_onnx == pytest.approx(on_torch, abs=1e-4)
    assert max(on_torch) - min(on_torch) > 1e-3  # distinct scores, not a constant


def test_retraining_replaces_a_stale_export(trained: Path, tmp_path: Path) -> None:
    again = tmp_path / "ce"
    train_cross_encoder(EXAMPLES, again, packaged_model_path(), batch_size=8)
    before = (again / onnx.EXPORT_DIR / onnx.META_FILE).read_text()
    train_cross_encoder(list(reversed(EXAMPLES)) * 2, again, packaged_model_path(), batch_size=4)
    assert onnx.export_is_current(again)
    assert (again / onnx.EXPORT_DIR / onnx.META_FILE).read_text() != before


def test_missing_export_is_made_on_first_load(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in trained.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    forget_verifiers()
    assert isinstance(load_verifier(str(copy)), onnx.OnnxCrossEncoder)
    assert onnx.export_is_current(copy)


def test_unexportable_directory_runs_on_torch(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(directory: Path, encoder: object = None) -> Path:
        raise OSError(f"read-only file system: {directory}")

    copy = tmp_path / "ro"
    copy.mkdir()
    for file in trained.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    monkeypatch.setattr(onnx, "export_cross_encoder", read_only)
    forget_verifiers()
    assert isinstance(verifier_module.load_verifier(str(copy)), CrossEncoderVerifier)

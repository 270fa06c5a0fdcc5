"""The cross-encoder's ONNX export: made at training (or by export-verifier), scores like torch,
refreshed on retrain; the proxy only reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cache_proxy.cli import main
from cache_proxy.embedding.loader import packaged_model_path
from cache_proxy.verify import crossencoder_onnx as onnx
from cache_proxy.verify.artifacts import VerifierLoadError
from cache_proxy.verify.candidate import Candidate
from cache_proxy.verify.verifier import VerifierRegistry

pytest.importorskip("torch")  # the [train] extra
from cache_tools.verifiers.crossencoder import (
    CrossEncoderVerifier,
    train_cross_encoder,
)
from tests.tools.verifiers.test_training import DIFFERENT, EXAMPLES, SAME

PAIRS = [(q, Candidate(i, c, 0.9)) for i, (q, c) in enumerate(SAME + DIFFERENT)]
LONG = ("why " * 300, Candidate(99, "because " * 300, 0.9))  # truncated on both sides


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ce") / "ce"
    train_cross_encoder(EXAMPLES * 2, out, packaged_model_path(), batch_size=8)
    return out


def test_training_leaves_a_current_export(trained: Path) -> None:
    assert onnx.export_is_current(trained)
    assert isinstance(VerifierRegistry().load(str(trained)), onnx.OnnxCrossEncoder)


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


def _copy_without_export(trained: Path, copy: Path) -> Path:
    copy.mkdir()
    for file in trained.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    return copy


def test_a_missing_export_is_refused_naming_the_command(trained: Path, tmp_path: Path) -> None:
    copy = _copy_without_export(trained, tmp_path / "copy")
    with pytest.raises(VerifierLoadError, match=f"cache-proxy export-verifier {copy}"):
        VerifierRegistry().load(str(copy))
    assert not (copy / onnx.EXPORT_DIR).exists()  # the proxy never exports by itself
    assert main(["export-verifier", str(copy)]) == 0
    assert isinstance(VerifierRegistry().load(str(copy)), onnx.OnnxCrossEncoder)

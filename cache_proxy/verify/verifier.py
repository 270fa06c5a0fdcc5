"""Loading verifiers by model directory: once per path per process, thread-safe."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from cache_proxy.verify.decision import Verifier

log = logging.getLogger(__name__)
MARKER = "verifier.json"
_loaded: dict[str, Verifier] = {}
_lock = threading.Lock()


class VerifierLoadError(RuntimeError):
    pass


def verifier_kind(path: str | Path) -> str:
    marker = Path(path) / MARKER
    if not marker.is_file():
        raise VerifierLoadError(
            f"{path} has no {MARKER}; train one with `cache-proxy train-verifier`"
        )
    kind = json.loads(marker.read_text()).get("kind")
    if kind not in ("crossencoder", "features"):
        raise VerifierLoadError(f"{marker}: unknown verifier kind {kind!r}")
    return str(kind)


def _build(path: str) -> Verifier:
    if verifier_kind(path) == "crossencoder":
        return _cross_encoder(Path(path))
    from cache_proxy.verify.features import FeatureVerifier

    return FeatureVerifier(path)


def _cross_encoder(directory: Path) -> Verifier:
    """The ONNX export when there is (or can be made) one that scores like torch; else torch."""
    from cache_proxy.verify import crossencoder_onnx as onnx

    if not onnx.export_is_current(directory):
        try:
            onnx.export_cross_encoder(directory)
        except (OSError, onnx.CrossEncoderExportError) as exc:  # e.g. a read-only volume
            log.warning("cross-encoder %s runs on torch (no ONNX export: %s)", directory, exc)
            from cache_proxy.verify.crossencoder import CrossEncoderVerifier

            return CrossEncoderVerifier(directory)
    return onnx.OnnxCrossEncoder(directory / onnx.EXPORT_DIR)


def load_verifier(path: str) -> Verifier:
    """The verifier at `path`; loaded on first use (may take seconds), then shared."""
    key = str(Path(path).resolve())
    with _lock:  # one load per path even when many requests arrive together
        if key not in _loaded:
            _loaded[key] = _build(key)
        return _loaded[key]


def forget_verifiers() -> None:
    """Drop loaded verifiers (after retraining into the same directory)."""
    with _lock:
        _loaded.clear()

"""The app's verifiers by model directory: loaded once per path from their exports, thread-safe.

The proxy reads exported artifacts only: a features verifier's trees.npz, a cross-encoder's
`onnx/`. Training and export live in cache_tools (`cache-proxy train-verifier`,
`cache-proxy export-verifier`); a directory without its export fails to load, naming the
command, and the decision path treats that as a miss (fail closed).
"""

from __future__ import annotations

import threading
from pathlib import Path

from cache_proxy.verify import crossencoder_onnx
from cache_proxy.verify.artifacts import EXPORT_COMMAND, VerifierLoadError, verifier_kind
from cache_proxy.verify.candidate import Verifier
from cache_proxy.verify.features import FeatureVerifier


def open_verifier(path: str | Path) -> Verifier:
    """The verifier at `path`, from its export (may take seconds: an ONNX session)."""
    directory = Path(path)
    if verifier_kind(directory) == "features":
        return FeatureVerifier(directory)
    if not crossencoder_onnx.export_is_current(directory):
        raise VerifierLoadError(
            f"cross-encoder {directory} has no current ONNX export: run "
            f"`{EXPORT_COMMAND} {directory}` (needs pip install 'vllm-semantic-cache[export]')"
        )
    return crossencoder_onnx.OnnxCrossEncoder(directory / crossencoder_onnx.EXPORT_DIR)


class VerifierRegistry:
    """Owned by the app (and by each offline run): one load per path even under concurrency."""

    def __init__(self) -> None:
        self._loaded: dict[str, Verifier] = {}
        self._lock = threading.Lock()

    def load(self, path: str) -> Verifier:
        key = str(Path(path).resolve())
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = open_verifier(key)
            return self._loaded[key]

    def forget(self) -> None:
        """Drop loaded verifiers (after retraining into the same directory)."""
        with self._lock:
            self._loaded.clear()

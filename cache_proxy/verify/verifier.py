"""Loading verifiers by model directory: once per path per process, thread-safe."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from cache_proxy.verify.decision import Verifier

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
        from cache_proxy.verify.crossencoder import CrossEncoderVerifier

        return CrossEncoderVerifier(path)
    from cache_proxy.verify.features import FeatureVerifier

    return FeatureVerifier(path)


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

"""A verifier directory on disk: `verifier.json` names its kind; each kind has its export.

Defined here once; the trainers in cache_tools write this layout and the proxy reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "verifier.json"  # {"kind": "crossencoder" | "features", ...} in every verifier dir
VERIFIER_KINDS = ("features", "crossencoder")
TRAIN_COMMAND = "cache-proxy train-verifier"
EXPORT_COMMAND = "cache-proxy export-verifier"


class VerifierLoadError(RuntimeError):
    pass


def verifier_kind(path: str | Path) -> str:
    marker = Path(path) / MARKER
    if not marker.is_file():
        raise VerifierLoadError(f"{path} has no {MARKER}; train one with `{TRAIN_COMMAND}`")
    kind = json.loads(marker.read_text()).get("kind")
    if kind not in VERIFIER_KINDS:
        raise VerifierLoadError(f"{marker}: unknown verifier kind {kind!r}")
    return str(kind)

"""Loading a cross-encoder with sentence-transformers (training and export share it)."""

from __future__ import annotations

import os
from typing import Any


def load_cross_encoder(path: str, num_labels: int | None = None) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, num_labels=num_labels, max_length=128, device="cpu")

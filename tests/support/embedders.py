"""Wrappers around the real embedder that let a test observe or delay it."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cache_proxy.embedding.base import Embedder, Vectors


class WrappedEmbedder:
    """Delegates to the real embedder; subclasses hook `before_encode`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def fits(self, text: str) -> bool:
        return self.inner.fits(text)

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.before_encode(texts)
        return self.inner.encode(texts)

    def before_encode(self, texts: Sequence[str]) -> None:
        pass


class CountingEmbedder(WrappedEmbedder):
    """Records the size of every batch it encodes."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.batches: list[int] = []

    def before_encode(self, texts: Sequence[str]) -> None:
        self.batches.append(len(texts))


class GatedEmbedder(WrappedEmbedder):
    """Held back until the test opens the gate: a slow model load. `arrived` counts the
    batches that reached the gate, so a test can wait until a request is held there."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.arrived = 0

    def before_encode(self, texts: Sequence[str]) -> None:
        self.arrived += 1
        self.gate.wait(timeout=30)

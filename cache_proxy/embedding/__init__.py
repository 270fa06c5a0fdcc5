"""Text -> normalised vectors: the embedder protocol, the ONNX/torch loader, a micro-batcher."""

from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.batcher import MicroBatcher
from cache_proxy.embedding.loader import load_embedder

__all__ = ["Embedder", "MicroBatcher", "load_embedder"]

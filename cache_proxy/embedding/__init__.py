"""Text -> normalised 384-d vectors: the embedder protocol, the real model, a micro-batcher."""

from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.batcher import MicroBatcher
from cache_proxy.embedding.loader import load_embedder
from cache_proxy.embedding.sentence import SentenceTransformerEmbedder

__all__ = ["Embedder", "MicroBatcher", "SentenceTransformerEmbedder", "load_embedder"]

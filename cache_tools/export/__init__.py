"""Exports the proxy serves from: the ONNX embedder (and the helpers verifier exports share)."""

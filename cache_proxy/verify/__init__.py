"""Deciding whether a retrieved cache candidate may be served: threshold, guards, verifier."""

"""The cache space: which embedder and which engine build made an entry.

An entry is only served by a replica whose space is the same: a new embedding model, another
model revision, quantization or chat template starts a fresh space by itself, and the old one
ages out (TTL) or is flushed. The served model name is part of every key already.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

# Files whose content decides the vectors; the rest of a model directory (README, licence,
# mtimes of a fresh install) must not start a new space.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".json", ".txt", ".model")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CacheSpace:
    embedder_digest: str
    dimension: int
    engine_revision: str | None = None
    quantization: str | None = None
    chat_template_digest: str | None = None

    @property
    def space_id(self) -> str:
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {"space": self.space_id, **asdict(self)}


def embedder_digest(model_path: str) -> str:
    """A digest of the content of the model's weight, config and vocabulary files."""
    root = Path(model_path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    for file in files:
        digest.update(f"{file.relative_to(root).as_posix()}\n".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()[:16]

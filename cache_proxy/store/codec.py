"""Entries as flat byte fields: the one format of the Redis hashes and the snapshot file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cache_proxy.store.entry import Answer

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class StoredEntry:
    """What a backend keeps of one entry, independent of any local index id."""

    partition: str
    exact: str
    query_text: str
    answer: Answer
    vector: Vector | None
    created_at: float
    expires_at: float | None

    def to_fields(self) -> dict[str, bytes]:
        meta = {
            "p": self.partition,
            "x": self.exact,
            "q": self.query_text,
            "a": answer_to_dict(self.answer),
            "c": self.created_at,
            "e": self.expires_at,
        }
        vector = b"" if self.vector is None else self.vector.astype(np.float32).tobytes()
        return {"meta": json.dumps(meta, ensure_ascii=False).encode(), "vec": vector}

    @classmethod
    def from_fields(cls, fields: dict[bytes, bytes], dimension: int) -> StoredEntry:
        """Raises ValueError (or KeyError) for fields this version cannot read."""
        meta = json.loads(fields[b"meta"])
        raw = fields.get(b"vec", b"")
        vector = None
        if raw:
            vector = np.frombuffer(raw, dtype=np.float32).copy()
            if vector.shape != (dimension,):
                raise ValueError(f"vector of {vector.size} values, expected {dimension}")
        return cls(
            partition=str(meta["p"]),
            exact=str(meta["x"]),
            query_text=str(meta["q"]),
            answer=answer_from_dict(meta["a"]),
            vector=vector,
            created_at=float(meta["c"]),
            expires_at=None if meta["e"] is None else float(meta["e"]),
        )


def answer_to_dict(answer: Answer) -> dict[str, Any]:
    return {
        "endpoint": answer.endpoint,
        "model": answer.model,
        "content": answer.content,
        "finish_reason": answer.finish_reason,
        "usage": answer.usage,
        "tool_calls": list(answer.tool_calls),
        "system_fingerprint": answer.system_fingerprint,
    }


def answer_from_dict(raw: dict[str, Any]) -> Answer:
    if raw["endpoint"] not in ("chat", "completion"):
        raise ValueError(f"unknown endpoint {raw['endpoint']!r}")
    return Answer(
        endpoint=raw["endpoint"],
        model=str(raw["model"]),
        content=str(raw["content"]),
        finish_reason=raw["finish_reason"],
        usage=raw.get("usage"),
        tool_calls=tuple(raw.get("tool_calls") or ()),
        system_fingerprint=raw.get("system_fingerprint"),
    )

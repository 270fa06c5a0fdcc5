"""The embedded backend's snapshot file: round trip, refusal of foreign or broken files, and
atomic replacement."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cache_proxy.store import Answer, StoredEntry
from cache_proxy.store.snapshot import Record, SnapshotError, read_snapshot, write_snapshot

DIM = 8
SPACE = "space-aaaa"


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def entry(n: int, *, vector: bool = True, expires_at: float | None = None) -> StoredEntry:
    answer = Answer(
        endpoint="chat" if n % 2 == 0 else "completion",
        model=f"model-{n}",
        content=f"Antwort №{n}: naïve café ✓\nsecond line",
        finish_reason="tool_calls" if n % 2 == 0 else "stop",
        usage={"prompt_tokens": 10 + n, "completion_tokens": 3 + n, "total_tokens": 13 + 2 * n},
        tool_calls=(
            {
                "id": f"call_{n}",
                "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps({"q": n})},
            },
        )
        if n % 2 == 0
        else (),
        system_fingerprint=f"fp_{n}" if n % 3 == 0 else None,
    )
    return StoredEntry(
        partition=f"part-{n % 2}",
        exact=f"exact-{n}",
        query_text=f"query {n} ✓",
        answer=answer,
        vector=unit(n) if vector else None,
        created_at=1_700_000_000.25 + n,
        expires_at=expires_at,
    )


def assert_same(got: StoredEntry, want: StoredEntry) -> None:
    assert got.partition == want.partition and got.exact == want.exact
    assert got.query_text == want.query_text
    assert got.answer == want.answer  # every field, usage and tool_calls included
    assert got.created_at == want.created_at and got.expires_at == want.expires_at
    if want.vector is None:
        assert got.vector is None
    else:
        assert got.vector is not None and got.vector.dtype == np.float32
        np.testing.assert_array_equal(got.vector, want.vector)


def sample_records() -> list[Record]:
    return [
        ("acme", entry(0, expires_at=1_800_000_000.5)),
        ("acme", entry(1)),
        ("globex", entry(2, vector=False)),
        ("globex", entry(3, expires_at=1_900_000_000.0)),
        ("initech", entry(4)),
    ]


def test_round_trip_keeps_every_tenant_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    records = sample_records()
    assert write_snapshot(path, SPACE, records) == len(records)
    loaded = read_snapshot(path, SPACE, DIM)
    assert [tenant for tenant, _ in loaded] == [tenant for tenant, _ in records]
    for (_, got), (_, want) in zip(loaded, records, strict=True):
        assert_same(got, want)
    assert loaded[0][1].answer.tool_calls[0]["function"]["name"] == "lookup"
    assert loaded[0][1].answer.usage == {
        "prompt_tokens": 10,
        "completion_tokens": 3,
        "total_tokens": 13,
    }


def test_an_empty_snapshot_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    assert write_snapshot(path, SPACE, []) == 0
    assert read_snapshot(path, SPACE, DIM) == []


def test_writing_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records()[:1])
    assert len(read_snapshot(path, SPACE, DIM)) == 1


def test_snapshot_of_another_space_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, "space-other", sample_records())
    with pytest.raises(SnapshotError) as raised:
        read_snapshot(path, SPACE, DIM)
    assert "space-other" in str(raised.value) and SPACE in str(raised.value)


def test_vectors_of_another_dimension_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records())
    with pytest.raises(SnapshotError, match="expected 16"):
        read_snapshot(path, SPACE, 16)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError):
        read_snapshot(tmp_path / "absent.snapshot", SPACE, DIM)


@pytest.mark.parametrize(
    "content",
    [
        b"",  # empty
        b"\x00\xff\xfe garbage that is not json at all \x80\x81",
        b"just some text\n",
        b'["a", "list"]\n',  # JSON, but no header
        json.dumps({"format": "some-other-format/9", "space": SPACE}).encode() + b"\n",
    ],
    ids=["empty", "binary", "text", "json-list", "other-format"],
)
def test_garbage_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "cache.snapshot"
    path.write_bytes(content)
    with pytest.raises(SnapshotError):
        read_snapshot(path, SPACE, DIM)


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records())
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 40])  # the last record is cut mid-line
    with pytest.raises(SnapshotError, match="unreadable"):
        read_snapshot(path, SPACE, DIM)


@pytest.mark.parametrize(
    "record",
    [
        b"not json\n",
        b"42\n",  # JSON, but not a record
        json.dumps({"tenant": "acme", "meta": "{}", "vec": ""}).encode() + b"\n",
        json.dumps({"tenant": "acme", "meta": "not json", "vec": ""}).encode() + b"\n",
        json.dumps({"meta": "{}", "vec": ""}).encode() + b"\n",  # no tenant
    ],
    ids=["not-json", "number", "empty-meta", "bad-meta", "no-tenant"],
)
def test_a_broken_record_is_refused(tmp_path: Path, record: bytes) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records()[:2])
    path.write_bytes(path.read_bytes() + record)
    with pytest.raises(SnapshotError):
        read_snapshot(path, SPACE, DIM)


def test_a_record_with_a_corrupt_vector_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records()[:1])
    header, line = path.read_bytes().splitlines()
    raw = json.loads(line)
    raw["vec"] = raw["vec"][:-8]  # fewer bytes than DIM floats (or invalid base64)
    path.write_bytes(header + b"\n" + json.dumps(raw).encode() + b"\n")
    with pytest.raises(SnapshotError):
        read_snapshot(path, SPACE, DIM)


def test_a_successful_write_leaves_only_the_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records())
    write_snapshot(path, SPACE, sample_records()[:2])  # replaces, not appends
    assert os.listdir(tmp_path) == ["cache.snapshot"]
    assert len(read_snapshot(path, SPACE, DIM)) == 2


def unencodable() -> StoredEntry:
    base = entry(7)
    broken = Answer(
        endpoint=base.answer.endpoint,
        model=base.answer.model,
        content="x",
        finish_reason="stop",
        usage={"completion_tokens": object()},  # type: ignore[dict-item]
    )
    return StoredEntry(
        base.partition, base.exact, base.query_text, broken, base.vector, base.created_at, None
    )


def test_a_record_that_cannot_be_encoded_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records())
    before = path.read_bytes()
    records = [*sample_records(), ("acme", unencodable()), ("acme", entry(8))]
    with pytest.raises(TypeError):
        write_snapshot(path, SPACE, records)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["cache.snapshot"]  # the temp file was removed
    assert len(read_snapshot(path, SPACE, DIM)) == len(sample_records())


def test_a_failing_record_source_leaves_the_previous_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    write_snapshot(path, SPACE, sample_records())
    before = path.read_bytes()

    def records() -> Iterator[Record]:
        yield from sample_records()
        raise RuntimeError("interrupted while writing")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_snapshot(path, SPACE, records())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["cache.snapshot"]


def test_a_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.snapshot"
    with pytest.raises(TypeError):
        write_snapshot(path, SPACE, [("acme", unencodable())])
    assert os.listdir(tmp_path) == []

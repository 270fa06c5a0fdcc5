"""The embedded backend's snapshot: every tenant's entries and vectors in one file.

Written atomically (temp file in the same directory, fsync, rename, fsync of the directory),
so a crash leaves the previous snapshot or the new one, never half of one. The first line
names the format and the cache space; a file of another space or format, or one that cannot
be read, is refused with SnapshotError and the caller starts empty.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from cache_proxy.store.codec import StoredEntry

FORMAT = "vllm-semantic-cache.snapshot/1"
Record = tuple[str, StoredEntry]  # (tenant, entry)


class SnapshotError(Exception):
    """The snapshot cannot be used; the message says why."""


def write_snapshot(path: Path, space: str, records: Iterable[Record]) -> int:
    """Replaces the snapshot at `path`; returns how many entries it holds."""
    header = {"format": FORMAT, "space": space}
    return write_atomically(path, header, (_encode(t, e) for t, e in records))


def write_atomically(path: Path, header: object, rows: Iterable[object]) -> int:
    """JSON lines (a header, then `rows`) replacing `path` whole or not at all; returns the
    number of rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(_line(header))
            for row in rows:
                out.write(_line(row))
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return count


def read_snapshot(path: Path, space: str, dimension: int) -> list[Record]:
    """The snapshot's entries; SnapshotError when it is of another space or unreadable."""
    return list(iter_snapshot(path, space, dimension))


def iter_snapshot(path: Path, space: str, dimension: int) -> Iterator[Record]:
    """The same, one record at a time: a million-entry load never holds them all (freeing
    a list of a million records at once held the GIL for 0.4 s). SnapshotError may come
    after some records: the caller discards what it built."""
    try:
        with path.open("rb") as handle:
            lines = iter(handle)
            header = json.loads(next(lines))
            check_header(header, space)
            yield from _decode_all(lines, dimension)
    except SnapshotError:
        raise
    except (OSError, StopIteration, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"unreadable ({type(exc).__name__}: {exc})") from exc


def check_header(header: object, space: str, format_name: str = FORMAT) -> None:
    if not isinstance(header, dict) or header.get("format") != format_name:
        raise SnapshotError("not a snapshot of this format")
    if header.get("space") != space:
        raise SnapshotError(
            f"written under cache space {header.get('space')}, this proxy's is {space} "
            "(another embedder or engine revision)"
        )


def _decode_all(lines: Iterator[bytes], dimension: int) -> Iterator[Record]:
    for line in lines:
        raw = json.loads(line)
        fields = {b"meta": raw["meta"].encode(), b"vec": base64.b64decode(raw["vec"])}
        yield str(raw["tenant"]), StoredEntry.from_fields(fields, dimension)


def _encode(tenant: str, entry: StoredEntry) -> dict[str, str]:
    fields = entry.to_fields()
    vec = base64.b64encode(fields["vec"]).decode()
    return {"tenant": tenant, "meta": fields["meta"].decode(), "vec": vec}


def _line(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode() + b"\n"


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

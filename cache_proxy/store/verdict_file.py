"""The embedded backend's online verdicts beside its snapshot (`<snapshot>.online`), so a
restarted proxy keeps the boundary it learned (cache_proxy/explore.py). Same rules as the
snapshot: written atomically, refused when of another cache space or unreadable."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from cache_proxy.store.backend import OnlineVerdict
from cache_proxy.store.snapshot import SnapshotError, check_header, write_atomically

FORMAT = "vllm-semantic-cache.online-verdicts/1"


def verdict_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".online")


def write_verdicts(path: Path, space: str, verdicts: Mapping[str, Sequence[OnlineVerdict]]) -> int:
    rows = (
        {"tenant": t, "s": v.similarity, "ok": v.correct, "e": v.entry, "m": v.margin}
        for t, kept in verdicts.items()
        for v in kept
    )
    return write_atomically(path, {"format": FORMAT, "space": space}, rows)


def read_verdicts(path: Path, space: str) -> dict[str, list[OnlineVerdict]]:
    """Each tenant's verdicts, oldest first; SnapshotError when the file cannot be used."""
    found: dict[str, list[OnlineVerdict]] = {}
    try:
        with path.open("rb") as handle:
            lines = iter(handle)
            check_header(json.loads(next(lines)), space, FORMAT)
            for line in lines:
                raw = json.loads(line)
                verdict = OnlineVerdict(
                    float(raw["s"]), bool(raw["ok"]), str(raw["e"]), float(raw["m"])
                )
                found.setdefault(str(raw["tenant"]), []).append(verdict)
    except SnapshotError:
        raise
    except (OSError, StopIteration, ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"unreadable ({type(exc).__name__}: {exc})") from exc
    return found

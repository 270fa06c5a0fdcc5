"""What the sidecar costs a GPU node: installed size, RSS at ready, time from start to /readyz.

    .venv/bin/python -m bench.footprint [--venv .venv-serve] [--runs 3]

Starts `cache-proxy serve` from the given virtualenv (a canned upstream on loopback answers
readiness), waits for /readyz and reads the process's RSS from /proc. The size is the venv's
site-packages on disk, a fair stand-in for the image's content.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.canned_upstream import canned_upstream
from bench.servers import free_port, wait_ready
from engine.process import REPO, stop_process_group


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise SystemExit(f"{venv}: no lib/python3*/site-packages")
    return found[0]


def rss_bytes(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes: the heap the process owns, and mapped library
    pages (shared with other processes; how many count depends on the page cache)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            name, value, _unit = line.split()
            fields[name] = int(value) * 1024
    return fields["RssAnon:"], fields["RssFile:"]


def one_start(venv: Path, upstream: str, log_dir: Path) -> tuple[float, tuple[int, int]]:
    """(seconds from exec to /readyz 200, (anonymous, file) RSS in bytes at that moment)."""
    port = free_port()
    command = [str(venv / "bin" / "cache-proxy"), "--log-level", "warning", "serve"]
    command += ["--upstream", upstream, "--port", str(port)]
    with (log_dir / f"proxy-{port}.log").open("wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", process, timeout_s=300)
        return time.perf_counter() - started, rss_bytes(process.pid)
    finally:
        stop_process_group(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=REPO / ".venv")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    venv = args.venv.resolve()
    size = tree_bytes(site_packages(venv))
    starts: list[float] = []
    anon: list[int] = []
    files: list[int] = []
    with tempfile.TemporaryDirectory() as log_dir, canned_upstream(None) as (upstream, _):
        for run in range(args.runs):
            seconds, (resident_anon, resident_file) = one_start(venv, upstream, Path(log_dir))
            starts.append(seconds)
            anon.append(resident_anon)
            files.append(resident_file)
            rss = f"anon {resident_anon >> 20} + file {resident_file >> 20} MiB"
            print(
                f"run {run + 1}/{args.runs}: ready in {seconds:.2f} s, RSS {rss}", file=sys.stderr
            )
    print("| venv | site-packages | RSS at ready: anon + file (median) | start to /readyz |")
    print("|---|---|---|---|")
    print(
        f"| {venv.name} | {size / 1e6:.0f} MB | {statistics.median(anon) / 2**20:.0f} + "
        f"{statistics.median(files) / 2**20:.0f} MiB | median {statistics.median(starts):.2f} s, "
        f"min {min(starts):.2f} s |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

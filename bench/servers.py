"""Servers the benchmarks start: `cache-proxy serve` as a user runs it, on a free port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from engine.process import REPO, stop_process_group

PROXY_BIN = REPO / ".venv" / "bin" / "cache-proxy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


@contextmanager
def running_proxy(log_path: Path, serve_args: list[str]) -> Iterator[str]:
    """`cache-proxy serve SERVE_ARGS --port P` in its own process group; yields its URL."""
    with running_proxy_process(log_path, serve_args) as (url, _):
        yield url


@contextmanager
def running_proxy_process(
    log_path: Path, serve_args: list[str], port: int | None = None, ready_timeout_s: float = 300
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The same, yielding the process too (for what /proc says about it)."""
    port = port or free_port()
    command = [str(PROXY_BIN), "--log-level", "warning", "serve", *serve_args, "--port", str(port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", process, ready_timeout_s)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop_process_group(process)

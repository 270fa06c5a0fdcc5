from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.servers import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(sys.executable).parent / "cache-proxy"
# URL -> the running proxy process, for tests that signal it.
PROCESSES: dict[str, subprocess.Popen[bytes]] = {}


@contextmanager
def proxy_process(config: dict[str, Any], tmp: Path, log_name: str = "proxy.log") -> Iterator[str]:
    """`cache-proxy serve --config` as a user runs it: uvicorn, real MiniLM, real FAISS."""
    tmp.mkdir(parents=True, exist_ok=True)
    config_path = tmp / "proxy.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / log_name).open("w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [str(PROXY_BIN), "serve", "--config", str(config_path), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        PROCESSES[url] = process
        wait_for(f"{url}/readyz", timeout_s=180)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()

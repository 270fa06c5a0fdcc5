"""The proxy as users run it (CLI + uvicorn + real MiniLM/FAISS), driven by the official openai
client. The engine here is the scripted upstream, for counting calls and injecting faults; the
same flows against real vLLM are in test_engine_e2e.py."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.e2e.conftest import PROCESSES, proxy_process
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.servers import serve_in_thread
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ScriptedUpstream]]:
    upstream = ScriptedUpstream()
    with serve_in_thread(upstream.app) as upstream_url:
        config = {
            "upstream": {"url": upstream_url, "read_timeout_s": 5},
            "server": {"max_body_bytes": 4096},
            "admin": {"token": "admin-e2e"},
            "tenants": {
                "acme": {"api_keys": ["sk-acme-1"], "threshold": 0.9},
                "globex": {"api_keys": ["sk-globex-1"], "threshold": 0.95},
            },
        }
        with proxy_process(config, tmp_path_factory.mktemp("proxy")) as proxy_url:
            yield proxy_url, upstream


def client(stack: tuple[str, ScriptedUpstream], key: str = "sk-acme-1") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack[0]}/v1", api_key=key, max_retries=0)


def ask(c: openai.OpenAI, text: str, **kw: Any) -> Any:
    return c.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": text}], **kw
    )


def test_miss_then_exact_hit(stack: tuple[str, ScriptedUpstream]) -> None:
    c, before = client(stack), stack[1].completions_called
    miss = ask(c, "What is the tallest mountain on Earth?")
    hit = ask(c, "What is the tallest mountain on Earth?")
    assert miss.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT"
    assert hit.parse().choices[0].message.content == miss.parse().choices[0].message.content
    assert stack[1].completions_called == before + 1


def test_paraphrase_hit_and_other_tenant_misses(stack: tuple[str, ScriptedUpstream]) -> None:
    ask(client(stack), "How do I bake sourdough bread at home?")
    paraphrase = ask(client(stack), "How can I bake sourdough bread at home?")
    assert paraphrase.headers["x-cache"] == "HIT"
    assert paraphrase.headers["x-cache-match"] == "semantic"
    other = ask(client(stack, "sk-globex-1"), "How do I bake sourdough bread at home?")
    assert other.headers["x-cache"] == "MISS"


def test_streaming_replay_of_json_entry_and_json_replay_of_stream(
    stack: tuple[str, ScriptedUpstream],
) -> None:
    c = client(stack)
    filled = ask(c, "Name three prime numbers").parse().choices[0].message.content
    stream = c.chat.completions.create(
        model="tiny",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Name three prime numbers"}],
    )
    chunks = list(stream)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == filled
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    streamed = c.chat.completions.create(
        model="tiny", stream=True, messages=[{"role": "user", "content": "Name two oceans"}]
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices)
    replay = ask(c, "Name two oceans")
    assert replay.headers["x-cache"] == "HIT"
    assert replay.parse().choices[0].message.content == text


def test_concurrent_identical_requests_make_one_upstream_call(
    stack: tuple[str, ScriptedUpstream],
) -> None:
    before = stack[1].completions_called

    async def burst() -> list[str]:
        c = openai.AsyncOpenAI(base_url=f"{stack[0]}/v1", api_key="sk-acme-1", max_retries=0)
        results = await asyncio.gather(
            *[
                c.chat.completions.create(
                    model="tiny",
                    messages=[{"role": "user", "content": "Coalesced question [[slow:0.05]]"}],
                )
                for _ in range(10)
            ]
        )
        await c.close()
        return [r.choices[0].message.content or "" for r in results]

    answers = asyncio.run(burst())
    assert len(set(answers)) == 1
    assert stack[1].completions_called == before + 1


def test_errors_and_cut_streams_are_not_cached(stack: tuple[str, ScriptedUpstream]) -> None:
    c = client(stack)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            ask(c, "please fail [[500]]")
        assert info.value.status_code == 502
    before = stack[1].completions_called
    for _ in range(2):
        with pytest.raises(openai.APIError):
            list(
                c.chat.completions.create(
                    model="tiny",
                    stream=True,
                    messages=[
                        {"role": "user", "content": "a stream that breaks [[midstream-error]]"}
                    ],
                )
            )
    assert stack[1].completions_called == before + 2


def test_client_disconnect_mid_stream_is_not_cached(stack: tuple[str, ScriptedUpstream]) -> None:
    prompt = "a long slow answer that nobody waits for [[slow:0.1]]"
    body = {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    headers = {"authorization": "Bearer sk-acme-1"}
    with httpx.stream(
        "POST", f"{stack[0]}/v1/chat/completions", json=body, headers=headers, timeout=10
    ) as response:
        assert response.headers["x-cache"] == "MISS"
        next(response.iter_lines())  # first chunk arrived: now walk away
    upstream = stack[1]
    wait_until_sync(
        lambda: any(p == prompt for p, _ in upstream.streams_ended),
        what="the engine's stream to end after the client left",
    )
    # The proxy let go of the engine mid-answer: no complete answer exists that it could store.
    assert [how for p, how in upstream.streams_ended if p == prompt] == ["abandoned"]
    again = ask(client(stack), prompt)
    assert again.headers["x-cache"] == "MISS"


def test_auth_validation_and_size_errors(stack: tuple[str, ScriptedUpstream]) -> None:
    with pytest.raises(openai.AuthenticationError):
        ask(client(stack, "sk-wrong"), "hi")
    with pytest.raises(openai.BadRequestError) as bad:
        client(stack).chat.completions.create(
            model="tiny",
            messages=[{"role": "wizard", "content": "x"}],  # type: ignore[misc,list-item]
        )
    assert "messages.0.role" in str(bad.value)
    with pytest.raises(openai.APIStatusError) as big:
        ask(client(stack), "x" * 10_000)
    assert big.value.status_code == 413


def test_models_health_ready_and_metrics(stack: tuple[str, ScriptedUpstream]) -> None:
    assert [m.id for m in client(stack).models.list()] == ["scripted"]
    assert httpx.get(f"{stack[0]}/healthz").status_code == 200
    assert httpx.get(f"{stack[0]}/readyz").json()["ready"] is True
    metrics = httpx.get(f"{stack[0]}/metrics").text
    assert 'cache_proxy_requests_total{outcome="hit_exact",tenant="acme"}' in metrics
    assert "cache_proxy_embed_seconds_bucket" in metrics


def test_no_prompt_text_or_keys_in_logs(
    stack: tuple[str, ScriptedUpstream], tmp_path_factory: pytest.TempPathFactory
) -> None:
    ask(client(stack), "my secret medical question about zebras")
    logs = "".join(p.read_text() for p in Path(tmp_path_factory.getbasetemp()).rglob("proxy.log"))
    assert "tenant=acme" in logs
    assert "zebras" not in logs and "sk-acme-1" not in logs


def test_sighup_reloads_tenants(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with serve_in_thread(upstream.app) as upstream_url:
        config = {"upstream": {"url": upstream_url}, "server": {"reload_interval_s": 3600},
                  "tenants": {"acme": {"api_keys": ["sk-acme-1"]}}}  # fmt: skip
        with proxy_process(config, tmp_path) as url:
            late = {"authorization": "Bearer sk-late"}
            body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}]}
            assert (
                httpx.post(f"{url}/v1/chat/completions", json=body, headers=late).status_code == 401
            )
            config["tenants"]["initech"] = {"api_keys": ["sk-late"]}  # type: ignore[index]
            (tmp_path / "proxy.yaml").write_text(yaml.safe_dump(config))
            PROCESSES[url].send_signal(signal.SIGHUP)
            wait_until_sync(
                lambda: (
                    httpx.post(f"{url}/v1/chat/completions", json=body, headers=late).status_code
                    == 200
                ),
                10,
                "the key added by SIGHUP to be accepted",
                interval_s=0.2,
            )


def test_slow_or_silent_clients_cannot_hold_a_connection(tmp_path: Path) -> None:
    upstream = ScriptedUpstream()
    with serve_in_thread(upstream.app) as upstream_url:
        config = {
            "upstream": {"url": upstream_url},
            "server": {"header_timeout_s": 1, "body_timeout_s": 1},
            "tenants": {"acme": {"api_keys": ["sk-acme-1"]}},
        }
        with proxy_process(config, tmp_path) as url:
            port = int(url.rsplit(":", 1)[1])
            silent = socket.create_connection(("127.0.0.1", port), timeout=10)
            slow = socket.create_connection(("127.0.0.1", port), timeout=10)
            slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # never ends
            short = socket.create_connection(("127.0.0.1", port), timeout=10)
            short.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b'Authorization: Bearer sk-acme-1\r\nContent-Length: 500\r\n\r\n{"model"'
            )  # declares 500 bytes, sends 8
            started = time.monotonic()
            assert silent.recv(1024) == b""  # closed by the proxy
            assert slow.recv(1024) == b""
            reply = read_reply(short)
            assert reply.startswith(b"HTTP/1.1 408") and b'"error"' in reply
            assert time.monotonic() - started < 8
            assert httpx.get(f"{url}/healthz").status_code == 200  # still serving the rest


def read_reply(sock: socket.socket) -> bytes:
    """One whole HTTP response: headers, then as many bytes as content-length says (the body
    may come in a packet of its own)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
         if line.startswith(b"content-length:")),
        0,
    )  # fmt: skip
    while len(body) < length and (more := sock.recv(4096)):
        body += more
    return head + b"\r\n\r\n" + body

"""Property tests (hypothesis, fixed seed) over generated requests to the in-process proxy.

1. Whatever a client sends (mostly-valid bodies with hostile values, raw bytes, odd headers),
   the answer is never a 5xx; every non-2xx answer is JSON in OpenAI's error shape; a 200 is a
   completion JSON or an SSE stream.
2. Tenant isolation: over sequences of requests of two tenants (shared prompts, paraphrases,
   shared system prompts) with admin invalidations and flushes in between, an answer served
   to a tenant was produced by the engine for that tenant (and that partition).

Each test builds one app for all its examples and drives it from its own event loop. The
scripted upstream answers "Answer N: <prompt>", N counting its calls, which is how a cached
answer is traced back to the request that made the engine produce it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache_proxy.app import create_app
from cache_proxy.config import parse_settings
from cache_proxy.embedding.base import Embedder
from tests.conftest import TWO_TENANTS
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
ADMIN = {"authorization": "Bearer admin-secret"}
TENANT_KEYS = {"acme": "sk-acme-1", "globex": "sk-globex-1"}


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=max_examples,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
    )


# ---- the app under test, on an event loop of the test's own -----------------------------


class ErrorLog(logging.Handler):
    """The proxy's ERROR records (its catch-alls log the traceback there)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def since(self, mark: int) -> str:
        lines = []
        for record in self.records[mark:]:
            lines.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                lines.extend(traceback.format_exception(exc)[-6:])
        return "".join(f"\n  log: {line.rstrip()}" for line in lines)


@dataclass
class Harness:
    runner: asyncio.Runner
    client: httpx.AsyncClient
    upstream: ScriptedUpstream
    log: ErrorLog
    requests: int = 0
    # tenant isolation bookkeeping: engine answer number -> (tenant, system prompt)
    owner: dict[int, tuple[str, str | None]] = field(default_factory=dict)

    def post(
        self, path: str, content: bytes, headers: dict[str, Any]
    ) -> tuple[httpx.Response, str]:
        """The response and the proxy's error log lines written while it was made."""
        mark = len(self.log.records)
        self.requests += 1
        response = self.runner.run(self._post(path, content, headers))
        return response, self.log.since(mark)

    async def _post(self, path: str, content: bytes, headers: dict[str, Any]) -> httpx.Response:
        async with asyncio.timeout(60):
            return await self.client.post(path, content=content, headers=headers)


@contextlib.contextmanager
def running_proxy(embedder: Embedder) -> Iterator[Harness]:
    upstream = ScriptedUpstream()
    app = create_app(
        parse_settings(TWO_TENANTS),
        embedder=embedder,
        upstream_transport=httpx.ASGITransport(app=upstream.app),
    )
    log = ErrorLog()
    proxy_logger = logging.getLogger("cache_proxy")
    proxy_logger.addHandler(log)
    stack = contextlib.AsyncExitStack()

    async def start() -> httpx.AsyncClient:
        await stack.enter_async_context(app.router.lifespan_context(app))
        await wait_until(lambda: app.state.runtime.pipeline is not None, 60, "the pipeline")
        to_proxy = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=to_proxy, base_url="http://proxy.test")
        return await stack.enter_async_context(client)

    started = time.perf_counter()
    try:
        with asyncio.Runner() as runner:
            try:
                harness = Harness(runner, runner.run(start()), upstream, log)
                yield harness
            finally:
                runner.run(stack.aclose())
        print(f"\n{harness.requests} requests in {time.perf_counter() - started:.1f}s")
    finally:
        proxy_logger.removeHandler(log)


# ---- what every answer must look like ---------------------------------------------------


def strict_json(raw: bytes) -> Any:
    """JSON as a client must be able to read it: no NaN/Infinity tokens."""

    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(raw, parse_constant=refuse)


def check_answer(response: httpx.Response, logs: str, wants_stream: bool | None) -> None:
    status = response.status_code
    ctype = response.headers.get("content-type", "")
    seen = f"status {status}, content-type {ctype!r}, body {response.content[:400]!r}{logs}"
    assert status < 500, seen
    if not 200 <= status < 300:
        assert ctype.startswith("application/json"), seen
        try:
            body = strict_json(response.content)
        except ValueError:
            pytest.fail(f"an error body that is not JSON: {seen}")
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), seen
        assert isinstance(body["error"].get("message"), str), seen
        assert isinstance(body["error"].get("type"), str), seen
        return
    assert status == 200, seen
    if ctype.startswith("text/event-stream"):
        assert wants_stream is not False, f"an SSE answer to a JSON request: {seen}"
        check_sse(response.content, seen)
        return
    assert wants_stream is not True, f"a JSON answer to a streaming request: {seen}"
    assert ctype.startswith("application/json"), seen
    try:
        body = strict_json(response.content)
    except ValueError:
        pytest.fail(f"a 200 body that is not JSON: {seen}")
    assert isinstance(body, dict), seen
    assert isinstance(body.get("choices"), list) and body["choices"], seen
    assert all(isinstance(choice, dict) for choice in body["choices"]), seen


def sse_payloads(raw: bytes) -> list[str]:
    text = raw.decode("utf-8")
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]


def check_sse(raw: bytes, seen: str) -> None:
    try:
        payloads = sse_payloads(raw)
    except UnicodeDecodeError:
        pytest.fail(f"an SSE stream that is not UTF-8: {seen}")
    assert payloads and payloads[-1] == "[DONE]", f"the stream does not end in [DONE]: {seen}"
    events = []
    for payload in payloads[:-1]:
        try:
            events.append(strict_json(payload.encode()))
        except ValueError:
            pytest.fail(f"an SSE event that is not JSON: {payload[:200]!r}; {seen}")
    assert all(isinstance(event, dict) for event in events), seen
    assert not any("error" in event for event in events), f"an error event in a 200: {seen}"
    assert any(event.get("choices") for event in events), seen


# ---- generated values -------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON fragment spliced in as it is (what json.dumps cannot write: 5,000-digit ints,
    overflowing literals, nesting thousands deep)."""

    text: str


def encode(body: Any, ascii_only: bool) -> bytes:
    """`body` as JSON bytes; NaN/Infinity as bare tokens; lone surrogates as `\\udXXX` escapes
    (ascii_only) or as their raw (invalid UTF-8) bytes."""
    fragments: list[str] = []

    def placeholder(value: Any) -> str:
        if not isinstance(value, Raw):
            raise TypeError(type(value).__name__)
        fragments.append(value.text)
        return f"\x00raw{len(fragments) - 1}\x00"

    text = json.dumps(body, allow_nan=True, ensure_ascii=ascii_only, default=placeholder)
    for i, fragment in enumerate(fragments):
        text = text.replace(json.dumps(f"\x00raw{i}\x00"), fragment, 1)
    return text.encode("utf-8", "surrogatepass")


PROMPTS = [
    "How do I reset my router password?",
    "What is the capital of France?",
    "Summarise the plot of Hamlet",
    "hello",
    "  ",
    "",
    "line one\r\nline two",
]


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """one_of with weights (one_of draws its branches evenly, and merges repeated ones)."""
    branches = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(range(len(branches))).flatmap(lambda i: branches[i])


SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
benign_text = st.one_of(st.sampled_from(PROMPTS), st.text(max_size=40))
hostile_text = st.one_of(
    st.text(alphabet=st.characters(codec=None), max_size=40),
    st.text(alphabet=st.one_of(st.characters(codec=None), SURROGATE), min_size=1, max_size=12),
    st.tuples(benign_text, SURROGATE, benign_text).map("".join),
)
any_text = weighted((2, benign_text), (1, hostile_text))

HUGE_STRING = Raw('"' + "a" * (2 * 1024 * 1024) + '"')  # over server.max_body_bytes
hostile_number = weighted(
    (1, st.floats(allow_nan=True, allow_infinity=True)),
    (1, st.sampled_from([math.nan, math.inf, -math.inf])),
    (1, st.integers()),
    (1, st.integers(min_value=-(2**70), max_value=2**70)),
    (1, st.integers(min_value=90, max_value=6000).map(lambda n: Raw("9" * n))),
    (1, st.integers(min_value=90, max_value=6000).map(lambda n: Raw("-" + "1" * n))),
    # literals that parse to a float out of range (an infinity), and harmless odd ones
    (2, st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("1" + "0" * 400 + ".5")])),
    (1, st.sampled_from([Raw("1e-999"), Raw("-0"), Raw("-0.0e+0"), Raw("1E2")])),
)
# Nesting either well under Python's recursion limit or far over it: in between, whether the
# JSON decoder gives up depends on the stack depth it is called at (hypothesis raises the
# limit while it runs a test), and a failure would not replay.
depth = weighted(
    (1, st.integers(min_value=30, max_value=900)),
    (1, st.integers(min_value=20_000, max_value=60_000)),
)
deep = st.tuples(depth, st.booleans()).map(
    lambda d: Raw("[" * d[0] + "]" * d[0]) if d[1] else Raw('{"a":' * d[0] + "1" + "}" * d[0])
)
wrong_type = st.sampled_from(
    ["yes", "", "1", 0, 1, -1, 1.5, True, False, None, [], {}, ["tiny"], {"a": 1}, [None]]
)
scalar = st.one_of(st.none(), st.booleans(), hostile_number, any_text)
json_value = st.recursive(
    scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
hostile_value = weighted(
    (2, wrong_type),
    (1, json_value),
    (1, hostile_text),
    (2, hostile_number),
    (1, deep),
    (1, st.just(HUGE_STRING)),
)

ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
text_parts = st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": any_text}), min_size=1, max_size=2
)
message = st.fixed_dictionaries(
    {
        "role": st.one_of(st.just("user"), st.sampled_from(ROLES)),
        "content": weighted((2, any_text), (1, text_parts), (1, st.none())),
    },
    optional={"name": benign_text},
)
model_name = st.one_of(st.sampled_from(["tiny", "scripted", "m-1"]), any_text)
tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {
                "name": st.sampled_from(["f", "lookup"]),
                "parameters": st.dictionaries(benign_text, json_value, max_size=3),
            }
        ),
    }
)
COMMON_OPTIONAL = {
    "stream": st.booleans(),
    "n": st.one_of(st.just(1), st.integers(min_value=1, max_value=3)),
    "temperature": st.one_of(st.none(), st.floats(min_value=0.0, max_value=2.0)),
    "top_p": st.floats(min_value=0.01, max_value=1.0),
    "max_tokens": st.integers(min_value=1, max_value=4096),
    "seed": st.integers(min_value=-(2**63), max_value=2**63),
    "frequency_penalty": st.floats(min_value=-2.0, max_value=2.0),
    "presence_penalty": st.floats(min_value=-2.0, max_value=2.0),
    "user": any_text,
    "metadata": st.dictionaries(benign_text, any_text, max_size=3),
    "stop": st.one_of(benign_text, st.lists(benign_text, max_size=3)),
    "logprobs": st.sampled_from([False, None]),
}
CHAT_OPTIONAL = {
    **COMMON_OPTIONAL,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "tools": st.lists(tool, min_size=1, max_size=2),
    "tool_choice": st.one_of(st.sampled_from(["auto", "none"]), any_text),
    "max_completion_tokens": st.integers(min_value=1, max_value=4096),
}
COMPLETION_OPTIONAL = {
    **COMMON_OPTIONAL,
    "echo": st.just(False),
    "best_of": st.just(1),
    "suffix": benign_text,
}
prompt = weighted(
    (4, any_text),
    (1, st.lists(any_text, min_size=1, max_size=3)),
    (1, st.lists(st.integers(min_value=0, max_value=50_000), min_size=1, max_size=8)),
    (1, st.lists(st.lists(st.integers(min_value=0, max_value=50_000), max_size=4), max_size=2)),
)


def _mutate(draw: st.DrawFn, body: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """0-3 hostile edits: a field set to a hostile value or a wrong type, a field dropped, an
    extra field, or a message's role/content changed or dropped."""
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        kind = draw(st.sampled_from(["set", "set", "drop", "extra", "message"]))
        if kind == "set":
            body[draw(st.sampled_from(fields))] = draw(hostile_value)
        elif kind == "drop":
            body.pop(draw(st.sampled_from(fields)), None)
        elif kind == "extra":
            body[draw(any_text)] = draw(hostile_value)
        elif isinstance(body.get("messages"), list) and body["messages"]:
            turns = body["messages"]
            turn = turns[draw(st.integers(min_value=0, max_value=len(turns) - 1))]
            if isinstance(turn, dict):
                key = draw(st.sampled_from(["role", "content", "name", "tool_calls"]))
                if draw(st.booleans()):
                    turn[key] = draw(hostile_value)
                else:
                    turn.pop(key, None)
    return body


@st.composite
def chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    turns = draw(st.lists(message, min_size=1, max_size=4))
    if draw(st.booleans()):
        turns[-1]["role"] = "user"
    body: dict[str, Any] = {"model": draw(model_name), "messages": turns}
    for name in draw(st.lists(st.sampled_from(sorted(CHAT_OPTIONAL)), unique=True, max_size=5)):
        body[name] = draw(CHAT_OPTIONAL[name])
    return _mutate(draw, body, ["model", "messages", *CHAT_OPTIONAL])


@st.composite
def completion_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": draw(model_name), "prompt": draw(prompt)}
    names = st.lists(st.sampled_from(sorted(COMPLETION_OPTIONAL)), unique=True, max_size=5)
    for name in draw(names):
        body[name] = draw(COMPLETION_OPTIONAL[name])
    return _mutate(draw, body, ["model", "prompt", *COMPLETION_OPTIONAL])


def wants_stream(body: Any) -> bool | None:
    """What form a 200 must take: SSE when `stream` is true, else JSON."""
    if not isinstance(body, dict):
        return None
    return body.get("stream") is True


# Header values as bytes: printable ASCII, tab and obs-text (0x80-0xff), as HTTP allows.
header_value = st.lists(
    st.integers(min_value=0x20, max_value=0xFF).filter(lambda b: b != 0x7F) | st.just(0x09),
    max_size=40,
).map(bytes)
valid_key = st.sampled_from([b"Bearer sk-acme-1", b"Bearer sk-globex-1"])
authorization = weighted(
    (4, valid_key),
    (
        1,
        st.sampled_from(
            [
                b"",
                b"Bearer",
                b"Bearer ",
                b"bearer sk-acme-1",
                b"BEARER   sk-globex-1  ",
                b"Basic c2stYWNtZS0x",
                b"Bearer sk-acme-1 sk-globex-1",
                b"Bearer sk-acme-\xff",
                b"Bearer admin-secret",
                b"Bearer sk-acme-1\t",
            ]
        ),
    ),
    (1, header_value),
    (1, header_value.map(lambda v: b"Bearer " + v)),
)
CACHE_TOKENS = [
    "no-cache",
    "no-store",
    "NO-CACHE",
    "max-age=0",
    "max-age=5",
    "max-age=-1",
    "max-age=abc",
    "max-age=1e3",
    "max-age=\u00b2",
    "max-age",
    "max-age==3",
    "max-age=" + "9" * 5000,
    "private",
    "",
    " ",
]
cache_control = st.one_of(
    st.lists(st.sampled_from(CACHE_TOKENS), min_size=1, max_size=4).map(
        lambda tokens: ", ".join(tokens).encode("latin-1")
    ),
    header_value,
)
content_type = st.one_of(
    st.sampled_from(
        [b"application/json", b"text/plain", b"application/json; charset=latin-1", b""]
    ),
    header_value,
)
content_length = st.sampled_from([b"0", b"1", b"-1", b"abc", b"99999999999999999999", b"\xb2"])


@st.composite
def headers(draw: st.DrawFn) -> dict[str, bytes]:
    sent: dict[str, bytes] = {}
    for name, strategy, present_in_6 in [
        ("authorization", authorization, 5),
        ("cache-control", cache_control, 4),
        ("content-type", content_type, 3),
        ("content-length", content_length, 1),
    ]:
        if draw(st.integers(min_value=1, max_value=6)) <= present_in_6:
            sent[name] = draw(strategy)
    return sent


raw_body = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"{}", b"[]", b"null", b"0", b'"x"', b"{", b"\xef\xbb\xbf{}"]),
    st.tuples(chat_bodies(), st.integers(min_value=0, max_value=200)).map(
        lambda t: encode(t[0], True)[: t[1]]
    ),
    st.tuples(chat_bodies(), st.binary(min_size=1, max_size=8)).map(
        lambda t: encode(t[0], False) + t[1]
    ),
)


# ---- 1. never a 5xx ---------------------------------------------------------------------


def _send_and_check(h: Harness, path: str, body: dict[str, Any], ascii_only: bool) -> None:
    sent = {"authorization": "Bearer sk-acme-1", "content-type": "application/json"}
    response, logs = h.post(path, encode(body, ascii_only), sent)
    check_answer(response, logs, wants_stream(body))


def test_generated_chat_requests_never_get_a_5xx(embedder: Embedder) -> None:
    with running_proxy(embedder) as h:

        @fuzz_settings(max_examples=700)
        @given(body=chat_bodies(), ascii_only=st.booleans())
        def check(body: dict[str, Any], ascii_only: bool) -> None:
            _send_and_check(h, CHAT, body, ascii_only)

        check()


def test_generated_completion_requests_never_get_a_5xx(embedder: Embedder) -> None:
    with running_proxy(embedder) as h:

        @fuzz_settings(max_examples=500)
        @given(body=completion_bodies(), ascii_only=st.booleans())
        def check(body: dict[str, Any], ascii_only: bool) -> None:
            _send_and_check(h, COMPLETIONS, body, ascii_only)

        check()


def test_raw_bodies_and_odd_headers_never_get_a_5xx(embedder: Embedder) -> None:
    with running_proxy(embedder) as h:

        @fuzz_settings(max_examples=450)
        @given(
            path=st.sampled_from([CHAT, COMPLETIONS]),
            body=st.one_of(
                raw_body,
                st.tuples(chat_bodies(), st.booleans()).map(lambda t: encode(t[0], t[1])),
                st.tuples(completion_bodies(), st.booleans()).map(lambda t: encode(t[0], t[1])),
            ),
            sent=headers(),
        )
        def check(path: str, body: bytes, sent: dict[str, bytes]) -> None:
            response, logs = h.post(path, body, sent)
            check_answer(response, logs, None)

        check()


# ---- 2. tenant isolation ----------------------------------------------------------------

# Paraphrase pairs, and one prompt both tenants ask in the same words.
POOL = [
    "How do I reset my router password?",
    "How can I reset the password of my router?",
    "What is the capital of France?",
    "What's the capital city of France?",
    "Tell me a secret about acme",
    "tell me a secret about acme",
    "Give me a recipe for banana bread",
]
SYSTEMS = [None, "You are a helpful assistant.", "Answer in one word."]
ANSWER = re.compile(r"Answer (\d+): ")


@st.composite
def sessions(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """A few prompts and system prompts, asked in turns by both tenants (so that the same
    words under the same system prompt come from both), with admin calls in between."""
    prompts = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=3, unique=True))
    systems = draw(st.lists(st.sampled_from(SYSTEMS), min_size=1, max_size=2, unique=True))
    ask = st.tuples(
        st.just("ask"),
        st.sampled_from(sorted(TENANT_KEYS)),
        st.sampled_from(prompts),
        st.sampled_from(systems),
        st.booleans(),
    )
    admin = st.one_of(
        st.tuples(st.just("invalidate"), st.sampled_from(sorted(TENANT_KEYS))),
        st.tuples(st.just("flush")),
    )
    return draw(st.lists(weighted((5, ask), (1, admin)), min_size=1, max_size=24))


def answered_text(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [strict_json(p.encode()) for p in sse_payloads(response.content) if p != "[DONE]"]
        return "".join(
            (event["choices"][0].get("delta") or {}).get("content") or ""
            for event in events
            if event.get("choices")
        )
    return str(strict_json(response.content)["choices"][0]["message"]["content"])


def _admin(h: Harness, path: str, body: dict[str, Any]) -> None:
    response, logs = h.post(path, json.dumps(body).encode(), ADMIN)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}{logs}"


def _ask(h: Harness, empty: set[str], op: tuple[Any, ...]) -> None:
    _, tenant, text, system, stream = op
    turns = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    body = {"model": "tiny", "messages": turns, "stream": stream}
    sent = {"authorization": f"Bearer {TENANT_KEYS[tenant]}"}
    before = h.upstream.completions_called
    response, logs = h.post(CHAT, json.dumps(body).encode(), sent)
    after = h.upstream.completions_called
    for n in range(before + 1, after + 1):
        h.owner[n] = (tenant, system)
    seen = f"{tenant} asked {text!r} (system {system!r}, stream {stream}){logs}"
    assert response.status_code == 200, f"{response.status_code} {response.text}; {seen}"
    cache = response.headers.get("x-cache")
    got = answered_text(response)
    found = ANSWER.match(got)
    assert found, f"not an engine answer: {got!r}; {seen}"
    n = int(found.group(1))
    seen = f"x-cache {cache}, answer {got!r}; {seen}"
    assert n in h.owner, f"an answer the engine never gave: {seen}"
    made_for, made_under = h.owner[n]
    assert made_for == tenant, f"answer {n} was made for {made_for}: {seen}"
    assert made_under == system, f"answer {n} was made under system {made_under!r}: {seen}"
    if cache == "HIT":
        assert n <= before, seen
        assert tenant not in empty, f"a hit after {tenant}'s cache was emptied: {seen}"
    else:
        assert cache == "MISS" and before < n <= after, seen
        empty.discard(tenant)


def test_cached_answers_never_cross_tenants(embedder: Embedder) -> None:
    with running_proxy(embedder) as h:

        @fuzz_settings(max_examples=45)
        @given(ops=sessions())
        def check(ops: list[tuple[Any, ...]]) -> None:
            _admin(h, "/admin/flush", {})
            empty = set(TENANT_KEYS)  # tenants whose cache holds nothing
            for op in ops:
                if op[0] == "ask":
                    _ask(h, empty, op)
                elif op[0] == "invalidate":
                    _admin(h, "/admin/invalidate", {"tenant": op[1]})
                    empty.add(op[1])
                else:
                    _admin(h, "/admin/flush", {})
                    empty.update(TENANT_KEYS)

        check()

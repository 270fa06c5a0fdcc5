"""Hostile input: a regression corpus of bodies and answers that must never become a 5xx.

Every hostile request gets a 4xx JSON answer in OpenAI's error shape whose `error.param` names
the offending field (a dotted path), and the engine is never called. An exception out of the
app is what a real client sees as Starlette's plain-text 500: `send` turns it into a failure
that says so (the app's own traceback stays chained to it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cache_proxy.app import create_app
from cache_proxy.config import parse_settings
from cache_proxy.embedding.base import Embedder
from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat
from tests.support.embedders import WrappedEmbedder
from tests.support.waiting import wait_until

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
ADMIN = {"authorization": "Bearer admin-secret"}
HOLE = "\x00hole\x00"  # where a case's raw JSON fragment goes
MB = 1024 * 1024


def with_hole(body: dict[str, Any], fragment: bytes) -> bytes:
    """`body` as JSON with the string HOLE replaced by `fragment`, byte for byte."""
    text = json.dumps(body).encode()
    marker = json.dumps(HOLE).encode()
    assert text.count(marker) == 1, body
    return text.replace(marker, fragment)


def user_turn(content: Any = "hello there") -> dict[str, Any]:
    return {"role": "user", "content": content}


def chat_with(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": [user_turn()], **fields}


def completion_with(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "prompt": "hello there", **fields}


async def send(
    p: ProxyUnderTest | httpx.AsyncClient,
    path: str,
    content: bytes | Any,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    client = p.client if isinstance(p, ProxyUnderTest) else p
    sent = {"authorization": "Bearer sk-acme-1", "content-type": "application/json"}
    try:
        async with asyncio.timeout(60):
            return await client.post(path, content=content, headers={**sent, **(headers or {})})
    except Exception as exc:
        pytest.fail(
            f"the app raised {type(exc).__name__}: {exc!r} instead of answering "
            "(a real client gets Starlette's plain-text 500)"
        )


def openai_error(response: httpx.Response) -> dict[str, Any]:
    """The `error` object, after checking the answer is JSON in OpenAI's error shape."""
    seen = f"status {response.status_code}, body {response.content[:300]!r}"
    assert response.headers.get("content-type", "").startswith("application/json"), seen
    try:
        body = json.loads(response.content)
    except ValueError:
        pytest.fail(f"the error body is not JSON: {seen}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), seen
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("message"), str) and error["message"], seen
    assert isinstance(error.get("type"), str) and error["type"], seen
    assert "param" in error and "code" in error, seen
    return error


def assert_rejected(
    p: ProxyUnderTest,
    response: httpx.Response,
    param: str | None,
    *,
    status: int | None = None,
    called_before: int = 0,
) -> dict[str, Any]:
    seen = f"status {response.status_code}, body {response.content[:300]!r}"
    if status is None:
        assert 400 <= response.status_code < 500, seen
    else:
        assert response.status_code == status, seen
    error = openai_error(response)
    if param is not None:
        assert error["param"] == param, seen
    assert p.upstream.completions_called == called_before, f"the engine was called; {seen}"
    return error


# ---- lone UTF-16 surrogates -------------------------------------------------------------

# (endpoint, body with a HOLE where the string goes, the param that must be named)
STRING_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    (CHAT, {"model": "tiny", "messages": [user_turn(HOLE)]}, "messages.0.content"),
    (
        CHAT,
        {"model": "tiny", "messages": [{"role": "system", "content": HOLE}, user_turn()]},
        "messages.0.content",
    ),
    (CHAT, chat_with(user=HOLE), "user"),
    (CHAT, chat_with(metadata={"tag": HOLE}), "metadata.tag"),
    (CHAT, chat_with(tool_choice=HOLE), "tool_choice"),
    (CHAT, {"model": HOLE, "messages": [user_turn()]}, "model"),
    (COMPLETIONS, {"model": "tiny", "prompt": HOLE}, "prompt"),
    (COMPLETIONS, {"model": "tiny", "prompt": [HOLE]}, "prompt.0"),
    (COMPLETIONS, completion_with(user=HOLE), "user"),
    (COMPLETIONS, completion_with(metadata={"tag": HOLE}), "metadata.tag"),
    (COMPLETIONS, {"model": HOLE, "prompt": "hello there"}, "model"),
]
SURROGATES = {
    "escaped": b'"hi \\ud800"',  # the JSON escape of a lone high surrogate
    "escaped-low": b'"hi \\udc00 there"',
    "raw-bytes": b'"hi \xed\xa0\x80"',  # its (invalid) UTF-8 bytes, as CESU/WTF-8 writes them
}


def _field_id(case: tuple[str, dict[str, Any], str]) -> str:
    turns = case[1].get("messages") or [{}]
    where = "system-turn:" if turns[0].get("role") == "system" else ""
    return f"{'chat' if case[0] == CHAT else 'completions'}:{where}{case[2]}"


@pytest.mark.parametrize("case", STRING_FIELDS, ids=_field_id)
@pytest.mark.parametrize("form", list(SURROGATES))
async def test_lone_surrogate_is_a_400_naming_the_field(
    proxy: ProxyUnderTest, case: tuple[str, dict[str, Any], str], form: str
) -> None:
    path, body, param = case
    response = await send(proxy, path, with_hole(body, SURROGATES[form]))
    assert_rejected(proxy, response, param)


@pytest.mark.parametrize("case", STRING_FIELDS, ids=_field_id)
async def test_the_string_corpus_bodies_are_fine_with_plain_text(
    proxy: ProxyUnderTest, case: tuple[str, dict[str, Any], str]
) -> None:
    """Control: the same bodies with a harmless string are answered (so the 4xx is the value)."""
    path, body, _ = case
    response = await send(proxy, path, with_hole(body, b'"hi there"'))
    assert response.status_code == 200, response.text[:300]
    assert proxy.upstream.completions_called == 1


# ---- NaN / Infinity ---------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "x": HOLE}}}
NUMBER_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    (CHAT, chat_with(frequency_penalty=HOLE), "frequency_penalty"),
    (CHAT, chat_with(seed=HOLE), "seed"),
    (CHAT, chat_with(tools=[TOOL]), "tools.0.function.parameters.x"),
    (CHAT, chat_with(temperature=HOLE), "temperature"),
    (COMPLETIONS, completion_with(frequency_penalty=HOLE), "frequency_penalty"),
    (COMPLETIONS, completion_with(seed=HOLE), "seed"),
    (COMPLETIONS, completion_with(temperature=HOLE), "temperature"),
]
# NaN / Infinity, and number literals that parse to an infinity (the same non-number, spelt
# finitely): JSON cannot carry them, so they cannot be forwarded.
NON_FINITE = {
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "-Infinity": b"-Infinity",
    "1e999": b"1e999",
    "-1e999": b"-1e999",
    "401-digit-float": b"1" + b"0" * 400 + b".0",
}


@pytest.mark.parametrize("case", NUMBER_FIELDS, ids=_field_id)
@pytest.mark.parametrize("literal", list(NON_FINITE.values()), ids=list(NON_FINITE))
async def test_non_finite_number_is_a_400_naming_the_field(
    proxy: ProxyUnderTest, case: tuple[str, dict[str, Any], str], literal: bytes
) -> None:
    path, body, param = case
    response = await send(proxy, path, with_hole(body, literal))
    assert_rejected(proxy, response, param)


@pytest.mark.parametrize("case", NUMBER_FIELDS, ids=_field_id)
async def test_the_number_corpus_bodies_are_fine_with_a_finite_number(
    proxy: ProxyUnderTest, case: tuple[str, dict[str, Any], str]
) -> None:
    path, body, _ = case
    response = await send(proxy, path, with_hole(body, b"1"))
    assert response.status_code == 200, response.text[:300]
    assert proxy.upstream.completions_called == 1


# ---- depth and size of single values ----------------------------------------------------

DEPTH = 10_000


@pytest.mark.parametrize(
    ("path", "body", "nested"),
    [
        (CHAT, chat_with(metadata=HOLE), b'{"a":' * DEPTH + b"1" + b"}" * DEPTH),
        (CHAT, chat_with(metadata=HOLE), b"[" * DEPTH + b"]" * DEPTH),
        (COMPLETIONS, completion_with(metadata=HOLE), b'{"a":' * DEPTH + b"1" + b"}" * DEPTH),
    ],
    ids=["chat-objects", "chat-arrays", "completions-objects"],
)
async def test_nesting_ten_thousand_deep_is_a_400(
    proxy: ProxyUnderTest, path: str, body: dict[str, Any], nested: bytes
) -> None:
    response = await send(proxy, path, with_hole(body, nested))
    error = assert_rejected(proxy, response, None, status=400)
    # The top field is enough here; a full dotted path 10,000 segments long would not help.
    assert str(error["param"]).split(".")[0] == "metadata", error


SURROGATE_KEYS = {"escaped": b'"\\ud800"', "raw-bytes": b'"\xed\xa0\x80"'}


@pytest.mark.parametrize("where", ["chat", "completions", "admin"])
@pytest.mark.parametrize("key", list(SURROGATE_KEYS))
async def test_nesting_too_deep_under_a_surrogate_key_is_a_400(
    proxy: ProxyUnderTest, where: str, key: str
) -> None:
    """The field that is too deep cannot be named here: its name is no text."""
    nested = SURROGATE_KEYS[key] + b": " + b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
    if where == "admin":
        path, raw, headers = "/admin/invalidate", b"{" + nested + b"}", ADMIN
    else:
        path = CHAT if where == "chat" else COMPLETIONS
        body = json.dumps(chat_with() if where == "chat" else completion_with()).encode()
        raw, headers = body[:-1] + b", " + nested + b"}", {}
    response = await send(proxy, path, raw, headers)
    assert_rejected(proxy, response, None, status=400)


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, chat_with(seed=HOLE), "seed"),
        (COMPLETIONS, completion_with(seed=HOLE), "seed"),
        (CHAT, chat_with(max_tokens=HOLE), "max_tokens"),
    ],
    ids=["chat-seed", "completions-seed", "chat-max_tokens"],
)
@pytest.mark.parametrize("sign", [b"", b"-"], ids=["positive", "negative"])
async def test_a_five_thousand_digit_integer_is_a_400_naming_the_field(
    proxy: ProxyUnderTest, path: str, body: dict[str, Any], param: str, sign: bytes
) -> None:
    response = await send(proxy, path, with_hole(body, sign + b"9" * 5000))
    assert_rejected(proxy, response, param, status=400)


# ---- bodies that are not a JSON object ---------------------------------------------------

NOT_AN_OBJECT = {
    "not-json": b"not json",
    "array": b'[{"model": "tiny", "messages": []}]',
    "empty": b"",
    "truncated": b'{"model": "tiny", "messages": [',
    "null": b"null",
    "string": b'"a string"',
    "invalid-utf8": b'{"model":"tiny","messages":[{"role":"user","content":"hi \xff"}]}',
}


@pytest.mark.parametrize("path", [CHAT, COMPLETIONS], ids=["chat", "completions"])
@pytest.mark.parametrize("raw", list(NOT_AN_OBJECT))
async def test_a_body_that_is_not_a_json_object_is_a_400(
    proxy: ProxyUnderTest, path: str, raw: str
) -> None:
    response = await send(proxy, path, NOT_AN_OBJECT[raw])
    assert_rejected(proxy, response, None, status=400)  # param may be null here


# ---- admin: authorisation before anything is read ---------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": "Bearer sk-acme-1"}],
    ids=["no-token", "wrong-token", "tenant-key"],
)
async def test_admin_without_the_token_is_403_before_the_body_is_judged(
    proxy: ProxyUnderTest, headers: dict[str, str]
) -> None:
    response = await proxy.client.post("/admin/invalidate", json={"bogus": 1}, headers=headers)
    assert response.status_code == 403, response.text[:300]
    assert openai_error(response)["param"] != "bogus"
    stats = await proxy.client.get("/admin/stats", headers=ADMIN)
    assert stats.status_code == 200  # nothing was changed either


async def test_admin_with_the_token_and_an_unknown_field_is_400_naming_it(
    proxy: ProxyUnderTest,
) -> None:
    response = await proxy.client.post("/admin/invalidate", json={"bogus": 1}, headers=ADMIN)
    assert response.status_code == 400, response.text[:300]
    assert openai_error(response)["param"] == "bogus"


class HugeBody:
    """A request body produced on demand, counting the bytes the app pulled from it."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.size, self.chunk, self.consumed = size, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = b'{"tenant": "'
        self.consumed += len(head)
        yield head
        while self.consumed < self.size:
            part = b"a" * min(self.chunk, self.size - self.consumed)
            self.consumed += len(part)
            yield part


async def post_huge(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], declared: bool
) -> tuple[httpx.Response, HugeBody, float]:
    huge = HugeBody(48 * MB)
    sent = {**headers, "content-type": "application/json"}
    if declared:
        sent["content-length"] = str(huge.size)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(60):
            response = await client.post(path, content=huge, headers=sent)
    except Exception as exc:
        pytest.fail(f"the app raised {type(exc).__name__}: {exc!r} instead of answering")
    return response, huge, time.perf_counter() - started


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_admin_without_the_token_does_not_read_a_48mb_body(
    proxy: ProxyUnderTest, declared: bool
) -> None:
    response, huge, elapsed = await post_huge(proxy.client, "/admin/invalidate", {}, declared)
    assert response.status_code in (403, 413), response.text[:300]
    openai_error(response)
    assert huge.consumed < 4 * MB, f"the app read {huge.consumed} bytes of a 48 MB body"
    assert elapsed < 5.0, f"took {elapsed:.1f}s"


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
@pytest.mark.parametrize(
    ("headers", "statuses"),
    [({}, (401, 413)), ({"authorization": "Bearer sk-acme-1"}, (413,))],
    ids=["no-key", "tenant-key"],
)
async def test_completions_do_not_read_a_48mb_body(
    proxy: ProxyUnderTest, declared: bool, headers: dict[str, str], statuses: Sequence[int]
) -> None:
    response, huge, elapsed = await post_huge(proxy.client, CHAT, headers, declared)
    assert response.status_code in statuses, response.text[:300]
    openai_error(response)
    assert huge.consumed < 4 * MB, f"the app read {huge.consumed} bytes of a 48 MB body"
    assert elapsed < 5.0, f"took {elapsed:.1f}s"
    assert proxy.upstream.completions_called == 0


# ---- engine answers are validated -------------------------------------------------------


class BrokenEngine:
    """An engine that answers 200 with a fixed (broken) JSON body, counting its calls."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls = 0
        self.app = Starlette(
            routes=[
                Route(CHAT, self._complete, methods=["POST"]),
                Route(COMPLETIONS, self._complete, methods=["POST"]),
                Route("/health", lambda request: Response(status_code=200), methods=["GET"]),
            ]
        )

    async def _complete(self, request: Request) -> Response:
        await request.body()
        self.calls += 1
        return JSONResponse(self.answer)


@asynccontextmanager
async def proxy_over(embedder: Embedder, engine: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy of TWO_TENANTS in front of an in-process engine app of the test's own."""
    settings = parse_settings(TWO_TENANTS)
    to_engine = httpx.ASGITransport(app=engine)
    app = create_app(settings, embedder=embedder, upstream_transport=to_engine)
    async with app.router.lifespan_context(app):
        await wait_until(lambda: app.state.runtime.pipeline is not None, 60, "the pipeline")
        to_proxy = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=to_proxy, base_url="http://proxy.test") as client:
            yield client


BROKEN_ANSWERS: dict[str, dict[str, Any]] = {
    "empty-object": {},
    "no-choices": {"id": "x", "object": "chat.completion", "model": "tiny", "choices": []},
    "choice-without-finish-or-message": {
        "id": "x",
        "object": "chat.completion",
        "model": "tiny",
        "choices": [{"index": 0}],
    },
}


@pytest.mark.parametrize(
    ("path", "body"),
    [(CHAT, chat("Is this engine well?")), (COMPLETIONS, completion_with())],
    ids=["chat", "completions"],
)
@pytest.mark.parametrize("answer", list(BROKEN_ANSWERS))
async def test_a_broken_engine_answer_is_a_502_and_not_cached(
    embedder: Embedder, path: str, body: dict[str, Any], answer: str
) -> None:
    engine = BrokenEngine(BROKEN_ANSWERS[answer])
    async with proxy_over(embedder, engine.app) as client:
        for attempt in (1, 2):
            response = await send(client, path, json.dumps(body).encode())
            assert response.status_code == 502, (attempt, response.text[:300])
            openai_error(response)
            assert engine.calls == attempt, "the broken answer was served from the cache"


# ---- the embedder failing ---------------------------------------------------------------


class FailingEmbedder(WrappedEmbedder):
    """Raises on encode once `failing` is set (or after the warm-up, with `after_warm_up`)."""

    def __init__(self, inner: Embedder, after_warm_up: bool) -> None:
        super().__init__(inner)
        self.after_warm_up = after_warm_up
        self.failing = False
        self.encodes = 0

    def before_encode(self, texts: Sequence[str]) -> None:
        self.encodes += 1
        if self.failing or (self.after_warm_up and self.encodes > 1):
            raise RuntimeError("scripted embedder failure")


async def test_an_embedder_failing_after_warm_up_is_a_503(proxy_factory: ProxyFactory) -> None:
    made: list[FailingEmbedder] = []

    def wrap(inner: Embedder) -> Embedder:
        made.append(FailingEmbedder(inner, after_warm_up=True))
        return made[-1]

    async with proxy_factory(wrap_embedder=wrap) as p:
        response = await send(p, CHAT, json.dumps(chat("How do I reset my router?")).encode())
        assert response.status_code == 503, response.text[:300]
        openai_error(response)
        assert made[0].encodes > 1  # the failure was really met


async def test_an_embedder_failing_on_the_hit_path_is_a_503(proxy_factory: ProxyFactory) -> None:
    made: list[FailingEmbedder] = []

    def wrap(inner: Embedder) -> Embedder:
        made.append(FailingEmbedder(inner, after_warm_up=False))
        return made[-1]

    async with proxy_factory(wrap_embedder=wrap) as p:
        first = await send(p, CHAT, json.dumps(chat("How do I reset my router password?")).encode())
        assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
        made[0].failing = True
        paraphrase = chat("How can I reset the password of my router?")
        response = await send(p, CHAT, json.dumps(paraphrase).encode())
        assert response.status_code == 503, response.text[:300]
        openai_error(response)

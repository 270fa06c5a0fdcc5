"""Request validation: only the fields the proxy reads; anything else passes through untouched."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cache_proxy.errors import BadRequest

Endpoint = Literal["chat", "completion"]


class _Open(BaseModel):
    # strict: "stream": "yes" is a 400, not silently True.
    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(_Open):
    include_usage: bool = False


class Message(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class CommonRequest(_Open):
    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1, le=128)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | int | None = None


class ChatRequest(CommonRequest):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_logprobs: int | None = Field(default=None, ge=0)


class CompletionRequest(CommonRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1)


MAX_JSON_DEPTH = 64  # deeper than any real request; the walk below stays bounded
MAX_INT_DIGITS = 100  # far beyond any seed or token id; Python refuses 4,300 with ValueError
_NOT_FINITE = object()  # what NaN / Infinity / -Infinity parse to: found and refused below
_TOO_LONG = object()
_SPACE = re.compile(r"\s*")


def parse_json_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The body as a JSON object that can be forwarded as it is: valid UTF-8 (no lone
    surrogates), finite numbers, integers of sane length, nesting up to `max_depth`."""
    try:  # surrogatepass: a surrogate's bytes decode, and the walk names the field holding it
        text = raw.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError as exc:
        raise BadRequest("The request body is not valid UTF-8.") from exc
    try:
        body = json.loads(
            text,
            parse_constant=lambda _: _NOT_FINITE,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # the C decoder gave up (thousands of levels)
        field = _field_too_deep(text)
        raise BadRequest(f"'{field}' is nested too deep.", param=field) from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    _check_representable(body, max_depth)
    return body


def _bounded_int(digits: str) -> int | object:
    return int(digits) if len(digits.lstrip("-")) <= MAX_INT_DIGITS else _TOO_LONG


def _finite_float(literal: str) -> float | object:
    value = float(literal)  # 1e999 is no error to Python: it is inf, which JSON cannot carry
    return value if math.isfinite(value) else _NOT_FINITE


def _printable(name: str) -> str:
    """A field name fit for an error body (a lone surrogate would break its JSON)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _field_too_deep(text: str) -> str | None:
    """The top-level key whose value the decoder could not nest into (rare path only)."""
    decoder, i = json.JSONDecoder(), _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if text[i : i + 1] != "{":
        return None
    i += 1
    while True:
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
        if text[i : i + 1] != '"':
            return None
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
        if text[i : i + 1] != ":":
            return None
        try:
            _, i = decoder.raw_decode(text, _SPACE.match(text, i + 1).end())  # type: ignore[union-attr]
        except RecursionError:
            return _printable(str(key))
        except ValueError:
            return None
        i = _SPACE.match(text, i).end()  # type: ignore[union-attr]
        if text[i : i + 1] != ",":
            return None
        i += 1


def _check_representable(body: dict[str, Any], max_depth: int) -> None:
    """Iterative walk (no recursion): the first value that cannot go on is a 400 naming it."""
    pending: list[tuple[Any, tuple[str, ...]]] = [(body, ())]
    while pending:
        value, path = pending.pop()
        if len(path) > max_depth:
            raise BadRequest(f"'{path[0]}' is nested deeper than {max_depth} levels.", path[0])
        problem = _problem(value)
        if problem:
            param = ".".join(path) or None
            raise BadRequest(f"Invalid value for '{param}': {problem}.", param=param)
        if isinstance(value, dict):
            for key, item in value.items():
                if _has_surrogate(key):
                    raise BadRequest("A key holds a lone UTF-16 surrogate.", ".".join(path) or None)
                pending.append((item, (*path, key)))
        elif isinstance(value, list):
            pending.extend((item, (*path, str(i))) for i, item in enumerate(value))


def _problem(value: Any) -> str | None:
    if value is _NOT_FINITE:
        return "NaN and Infinity are not numbers JSON can carry"
    if value is _TOO_LONG:
        return f"an integer of more than {MAX_INT_DIGITS} digits"
    if isinstance(value, str) and _has_surrogate(value):
        return "a lone UTF-16 surrogate is not text"
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def validate_request(endpoint: Endpoint, body: dict[str, Any]) -> ChatRequest | CompletionRequest:
    model = ChatRequest if endpoint == "chat" else CompletionRequest
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _bad_request(exc) from exc


def _bad_request(exc: ValidationError) -> BadRequest:
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return BadRequest(f"Missing required parameter: '{param}'.", param=param)
    return BadRequest(f"Invalid value for '{param}': {first['msg']}.", param=param)

from __future__ import annotations

from typing import Any

from cache_proxy.config import TenantSettings
from cache_proxy.keys import CacheKey, build_key
from cache_proxy.schemas import validate_request

POLICY = TenantSettings()


def key_of(body: dict[str, Any], endpoint: str = "chat") -> CacheKey:
    return build_key(endpoint, body, validate_request(endpoint, body), POLICY)  # type: ignore[arg-type]


def chat(*turns: tuple[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": r, "content": c} for r, c in turns], **params}


def test_last_user_turn_is_the_query_with_only_its_ends_trimmed() -> None:
    a = key_of(chat(("user", "  What is love?\r\n")))
    b = key_of(chat(("user", "What is love?")))
    assert a.query_text == "What is love?" and a.exact == b.exact and a.semantic
    code = key_of(chat(("user", "if x:\n    y()\nz()")))
    flat = key_of(chat(("user", "if x: y() z()")))
    assert code.exact != flat.exact


def test_everything_but_the_last_turn_picks_the_partition() -> None:
    base = key_of(chat(("system", "be brief"), ("user", "hi")))
    assert key_of(chat(("system", "be long"), ("user", "hi"))).partition != base.partition
    assert (
        key_of(chat(("system", "be brief"), ("user", "hi"), temperature=0.7)).partition
        != base.partition
    )
    assert (
        key_of(chat(("system", "be brief"), ("user", "hi"), tools=[{"t": 1}])).partition
        != base.partition
    )
    assert key_of(chat(("system", "be brief"), ("user", "other"))).partition == base.partition
    delivery = chat(("system", "be brief"), ("user", "hi"), stream=True, user="u1")
    assert key_of(delivery).exact == base.exact


def test_endpoint_is_part_of_the_partition() -> None:
    completion = key_of({"model": "m", "prompt": "hi"}, "completion")
    assert completion.partition != key_of(chat(("user", "hi"))).partition


def test_non_user_last_turn_and_images_are_exact_only() -> None:
    assert not key_of(chat(("user", "hi"), ("assistant", "prefill"))).semantic
    image = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {}}]
    assert not key_of(chat(("user", image))).semantic
    parts = [{"type": "text", "text": "hello"}, {"type": "text", "text": "world"}]
    assert key_of(chat(("user", parts))).query_text == "hello\nworld"


def test_bypass_reasons() -> None:
    assert key_of(chat(("user", "x"), n=2)).bypass_reason == "n>1"
    assert key_of(chat(("user", "x"), logprobs=True)).bypass_reason == "logprobs"
    assert (
        key_of({"model": "m", "prompt": ["a", "b"]}, "completion").bypass_reason
        == "prompt_not_text"
    )
    assert key_of({"model": "m", "prompt": "a", "echo": True}, "completion").bypass_reason
    assert key_of(chat(("user", "x"), temperature=1.5)).bypass_reason is None
    hot = TenantSettings(max_temperature=1.0)
    body = chat(("user", "x"), temperature=1.5)
    assert (
        build_key("chat", body, validate_request("chat", body), hot).bypass_reason == "temperature"
    )

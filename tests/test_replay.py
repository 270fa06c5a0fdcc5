from __future__ import annotations

from cache_proxy.assemble import StreamAssembler
from cache_proxy.replay import answer_json, answer_sse_chunks, content_pieces
from cache_proxy.store import Answer

ANSWER = Answer(
    "chat",
    "m",
    "Hello there,  general   Kenobi!\nNice.",
    "stop",
    {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9},
)


def test_pieces_rejoin_to_the_exact_content() -> None:
    assert "".join(content_pieces(ANSWER.content)) == ANSWER.content
    assert len(content_pieces(ANSWER.content)) > 1
    assert content_pieces("") == []


def test_sse_replay_round_trips_through_the_assembler() -> None:
    chunks = list(answer_sse_chunks(ANSWER, include_usage=True))
    assembler = StreamAssembler("chat", "m")
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.answer() == ANSWER
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == ANSWER.usage
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_sse_replay_without_usage_has_no_usage_chunk() -> None:
    assert all(c["choices"] for c in answer_sse_chunks(ANSWER, include_usage=False))


def test_json_replay_has_fresh_ids() -> None:
    first, second = answer_json(ANSWER), answer_json(ANSWER)
    assert first["id"] != second["id"] and first["id"].startswith("chatcmpl-")
    assert first["choices"][0]["message"] == {"role": "assistant", "content": ANSWER.content}


def test_tool_calls_assemble_and_replay() -> None:
    assembler = StreamAssembler("chat", "m")
    deltas = [
        {"index": 0, "id": "call_1", "function": {"name": "get_", "arguments": '{"ci'}},
        {"index": 0, "function": {"name": "weather", "arguments": 'ty": "Oslo"}'}},
    ]
    for delta in deltas:
        assembler.add({"choices": [{"index": 0, "delta": {"tool_calls": [delta]}}]})
    assembler.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    answer = assembler.answer()
    assert answer.complete
    call = answer.tool_calls[0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert answer_json(answer)["choices"][0]["message"]["tool_calls"][0]["id"] == "call_1"


def test_incomplete_streams_are_not_complete() -> None:
    no_finish = StreamAssembler("completion", "m")
    no_finish.add({"choices": [{"index": 0, "text": "partial"}]})
    assert not no_finish.answer().complete
    aborted = StreamAssembler("completion", "m")
    aborted.add({"choices": [{"index": 0, "text": "x", "finish_reason": "abort"}]})
    assert not aborted.answer().complete
    two = StreamAssembler("completion", "m")
    two.add(
        {
            "choices": [
                {"index": 1, "text": "x", "finish_reason": "stop"},
                {"index": 0, "text": "y", "finish_reason": "stop"},
            ]
        }
    )
    assert not two.answer().complete

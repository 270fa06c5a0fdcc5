"""verify.online through the proxy's HTTP app: the reworded statements replayed, one tenant per
policy, next to static thresholds.

    .venv/bin/python -m bench.online_replay [--pairs tests/data/reworded_statements.jsonl.gz]
        [--seed 0] [--limit N]

The engine is stood in for by a *labelled upstream*: its answer to a prompt is the text of the
statement the prompt states (a rewording's answer is its original statement, per the file's
labels; any other prompt's answer is the prompt). So the proxy's own judge works on real
answers: `answer_agreement` embeds the cached and the fresh answer (two different statements
of one topic can agree above 0.9: judge errors included). Everything else is the product: the
app, real MiniLM embedder, FAISS, guards, single flight, the explorer and its learned score.

Per tenant: every statement is asked once (a miss, stored), then every rewording once in a
seeded order. A hit is right when the answer served is the rewording's own statement. Judges
run in the background as in production; the replay waits for them after each request, so a
run is reproducible. "judge ok" is the share of the judge's verdicts that match the labels.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cache_proxy.app import create_app
from cache_proxy.config import EmbeddingSettings, parse_settings
from cache_proxy.embedding.base import Embedder
from cache_proxy.embedding.loader import load_embedder
from cache_proxy.verify.judges import JudgeCase
from cache_tools.evaluation.online_eval import stream_sides
from cache_tools.evaluation.pairs import Pair, load_pairs

REWORDED = Path(__file__).resolve().parents[1] / "tests/data/reworded_statements.jsonl.gz"
KEY = "sk-bench"


class LabelledUpstream:
    """Answers each prompt with its statement's text (OpenAI chat JSON)."""

    def __init__(self, statement_of: dict[str, str]) -> None:
        self.statement_of = statement_of
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        prompt = str(body["messages"][-1]["content"])
        text = self.statement_of.get(prompt, prompt)
        message = {"role": "assistant", "content": text}
        return JSONResponse(
            {
                "id": "labelled",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 8, "total_tokens": 16},
            }
        )


@dataclass
class Replay:
    name: str
    queries: int = 0
    served: int = 0
    right: int = 0
    report: dict[str, Any] | None = None
    judge_right: int = 0  # verdicts that agree with the labels
    judge_wrong: int = 0

    def row(self) -> str:
        wrong = self.served - self.right
        outcomes = (self.report or {}).get("outcomes", {})
        judged = sum(outcomes.get(k, 0) for k in ("correct", "wrong"))
        boundary = (self.report or {}).get("boundary")
        verdicts = self.judge_right + self.judge_wrong
        accuracy = f"{self.judge_right / verdicts:.1%}" if verdicts else ""
        return (
            f"{self.name:<34}{self.served / self.queries:>8.1%}"
            f"{wrong / max(1, self.served):>8.2%}{self.right / self.queries:>8.1%}"
            f"{judged:>8}{accuracy:>10}{'' if boundary is None else f'{boundary:.3f}':>10}"
        )


async def replay(
    name: str, tenant: dict[str, Any], pairs: list[Pair], seed: int, embedder: Embedder
) -> Replay:
    cache, queries = stream_sides(pairs, "paraphrases")
    statement_of = {p.text_b: p.text_a for p in pairs if p.label == 1}
    upstream = LabelledUpstream(statement_of)
    config = {"upstream": {"url": "http://engine.bench"}, "admin": {"token": "bench-admin"},
              "tenants": {"bench": {"api_keys": [KEY], **tenant}}}  # fmt: skip
    transport = httpx.ASGITransport(app=upstream.app)
    app = create_app(parse_settings(config), embedder=embedder, upstream_transport=transport)
    result = Replay(name)
    async with app.router.lifespan_context(app):
        while app.state.runtime.pipeline is None:
            await asyncio.sleep(0.05)
        explorer = app.state.runtime.pipeline.explorer
        _score_the_judge(explorer, statement_of, result)
        to_proxy = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=to_proxy, base_url="http://proxy.bench") as client:
            for text in cache:
                await _ask(client, text)
            order = list(queries)
            random.Random(seed).shuffle(order)
            for i, query in enumerate(order):
                response = await _ask(client, query)
                await explorer.wait_idle()
                result.queries += 1
                if response.headers["x-cache"] == "HIT":
                    result.served += 1
                    content = response.json()["choices"][0]["message"]["content"]
                    result.right += content == statement_of[query]
                if i % 200 == 199:
                    print(f"  {name}: {i + 1}/{len(order)} asked", flush=True)
            admin = {"authorization": "Bearer bench-admin"}
            report = (await client.get("/admin/online", headers=admin)).json()
            result.report = report["tenants"]["bench"] if tenant.get("verify") else None
    return result


def _score_the_judge(explorer: Any, statement_of: dict[str, str], result: Replay) -> None:
    """Wraps the explorer's judges to count their verdicts against the labels: right when
    the cached answer is the statement the new prompt states."""
    judge_for = explorer._judge_for

    def counted(config: Any) -> Any:
        judge = judge_for(config)

        async def judged(case: JudgeCase) -> bool | None:
            verdict: bool | None = await judge.judge(case)
            if verdict is not None:
                truth = case.cached_answer == statement_of.get(case.query, case.query)
                result.judge_right += verdict == truth
                result.judge_wrong += verdict != truth
            return verdict

        return type("Counted", (), {"kind": judge.kind, "judge": staticmethod(judged)})()

    explorer._judge_for = counted


async def _ask(client: httpx.AsyncClient, text: str) -> httpx.Response:
    body = {"model": "bench", "messages": [{"role": "user", "content": text}], "temperature": 0}
    response = await client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    response.raise_for_status()
    return response


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, default=REWORDED)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="the first N pairs only (a quick look)")
    args = parser.parse_args()
    pairs = load_pairs(args.pairs)[: args.limit]
    embedder = load_embedder(EmbeddingSettings())
    tenants: dict[str, dict[str, Any]] = {
        "static 0.92 (README example)": {"threshold": 0.92},
        "static 0.97": {"threshold": 0.97},
        "online, defaults (bound 1%)": {"verify": {"online": {"enabled": True}}},
        "online, confidence 0.9": {"verify": {"online": {"enabled": True, "confidence": 0.9}}},
    }
    results = [await replay(n, t, pairs, args.seed, embedder) for n, t in tenants.items()]
    print(f"{'tenant':<34}{'served':>8}{'wrong':>8}{'recall':>8}{'judged':>8}"
          f"{'judge ok':>10}{'boundary':>10}")  # fmt: skip
    for result in results:
        print(result.row())


if __name__ == "__main__":
    asyncio.run(main())

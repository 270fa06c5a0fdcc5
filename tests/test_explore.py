"""Hits verified online through the proxy: explore, judge off the path, learn, then serve."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from cache_proxy.explore import MAX_JUDGES_IN_FLIGHT, Exploration, Explorer, TenantEvidence
from cache_proxy.metrics import Metrics
from cache_proxy.store import Answer, OnlineVerdict
from cache_proxy.verify.judges import JudgeCase
from cache_proxy.verify.online import OnlineSettings
from cache_proxy.verify.policy import OnlineVerifyPolicy
from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat
from tests.support.waiting import wait_until

CHAT = "/v1/chat/completions"
CACHED = "How do I reset my router password?"
PARAPHRASES = [
    "How can I reset the password of my router?",
    "How do I reset the password on my router?",
    "What is the way to reset my router password?",
    "How to reset a router password?",
    "How do I change my router's password back to default?",
    "I forgot my router password, how do I reset it?",
    "Steps to reset the password of a router?",
    "How can my router password be reset?",
]


def online_config(**online: Any) -> dict[str, Any]:
    config = copy.deepcopy(TWO_TENANTS)
    config["tenants"]["acme"]["verify"] = {"online": {"enabled": True, **online}}
    return config


async def ask(p: ProxyUnderTest, text: str, key: str = "sk-acme-1") -> Any:
    response = await p.client.post(CHAT, json=chat(text), headers=p.headers(key))
    await p.app.state.runtime.pipeline.explorer.wait_idle()
    return response


async def online_report(p: ProxyUnderTest, tenant: str = "acme") -> dict[str, Any]:
    return await p.tenant_report("online", tenant)


def explorer(p: ProxyUnderTest) -> Explorer:
    found: Explorer = p.app.state.runtime.pipeline.explorer
    return found


def config_of(p: ProxyUnderTest, tenant: str = "acme") -> OnlineVerifyPolicy:
    found: OnlineVerifyPolicy = p.app.state.runtime.tenants.get(tenant).policy.verify.online
    return found


async def test_a_candidate_is_explored_and_judged_before_anything_is_learned(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(online_config(min_agreement=0.5)) as proxy:
        await ask(proxy, f"{CACHED} [[echo]]")  # answers: the prompts' own words
        explored = await ask(proxy, f"{PARAPHRASES[0]} [[echo]]")
        assert explored.headers["x-cache"] == "MISS"  # the client got the engine's answer
        assert explored.json()["choices"][0]["message"]["content"] == PARAPHRASES[0]
        assert proxy.upstream.completions_called == 2  # no judge call: answers are compared
        report = await online_report(proxy)
        assert report["outcomes"] == {"correct": 1}
        assert report["boundary"] == 1.0 and report["verdicts_in_window"] == 1
        metrics = (await proxy.client.get("/metrics")).text
        assert 'cache_proxy_online_decisions_total{action="explore",tenant="acme"} 1.0' in metrics
        assert 'cache_proxy_online_verdicts_total{outcome="correct",tenant="acme"} 1.0' in metrics


async def test_judged_explorations_lower_the_boundary_until_paraphrases_are_served(
    proxy_factory: ProxyFactory,
) -> None:
    # A loose bound so a handful of verdicts certify it: 7 right of 7 -> 95% upper bound 0.28.
    config = online_config(max_error=0.3, min_verdicts=1, audit_rate=0.0, min_agreement=0.5)
    async with proxy_factory(config) as proxy:
        await ask(proxy, f"{CACHED} [[echo]]")
        asked = [f"{text} [[echo]]" for text in PARAPHRASES]
        outcomes = [(await ask(proxy, text)).headers["x-cache"] for text in asked]
        report = await online_report(proxy)
        assert outcomes[0] == "MISS" and report["boundary"] < 1.0
        assert "HIT" in outcomes  # served once the verdicts certified a boundary below it
        served = outcomes.index("HIT")
        assert report["outcomes"] == {"correct": served}  # every exploration was judged


async def test_an_entry_judged_wrong_is_not_served_at_that_similarity(
    proxy_factory: ProxyFactory,
) -> None:
    config = online_config(min_agreement=0.9999, audit_rate=0.0)
    async with proxy_factory(config) as proxy:
        await ask(proxy, CACHED)
        tenant_config = config_of(proxy)
        for i in range(400):  # the tenant's boundary: 0.5 (400 right verdicts on other entries)
            explorer(proxy).record("acme", OnlineVerdict(0.5, True, f"other-{i}"), tenant_config)
        assert (await online_report(proxy))["boundary"] == 0.5
        judged = await ask(proxy, PARAPHRASES[0])  # served: above the tenant's boundary
        assert judged.headers["x-cache"] == "HIT"
        entry = judged.headers["x-cache-entry"]
        explorer(proxy).record("acme", OnlineVerdict(0.99, False, entry), tenant_config)
        again = await ask(proxy, PARAPHRASES[1])  # the only entry is its nearest
        assert again.headers["x-cache"] == "MISS"
        assert (await online_report(proxy))["outcomes"] == {"wrong": 1}  # judged, disagreeing


async def test_a_wrong_verdict_comes_from_answers_that_disagree(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(online_config(min_agreement=0.9999)) as proxy:
        await ask(proxy, CACHED)
        await ask(proxy, PARAPHRASES[0])
        assert (await online_report(proxy))["outcomes"] == {"wrong": 1}


async def test_verdicts_stay_with_their_tenant(proxy_factory: ProxyFactory) -> None:
    config = online_config(audit_rate=0.0)
    config["tenants"]["globex"]["verify"] = {"online": {"enabled": True}}
    async with proxy_factory(config) as proxy:
        for i in range(400):
            explorer(proxy).record("acme", OnlineVerdict(0.5, True, f"e{i}"), config_of(proxy))
        for key in ("sk-acme-1", "sk-globex-1"):
            await ask(proxy, CACHED, key)
        assert (await ask(proxy, PARAPHRASES[0], "sk-acme-1")).headers["x-cache"] == "HIT"
        assert (await ask(proxy, PARAPHRASES[0], "sk-globex-1")).headers["x-cache"] == "MISS"
        assert (await online_report(proxy, "globex"))["boundary"] == 1.0


async def test_guards_reject_before_the_policy_so_nothing_is_explored(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(online_config()) as proxy:
        await ask(proxy, "What was the population of Nepal in 2016?")
        missed = await ask(proxy, "What was the population of Nepal in 2017?")
        assert missed.headers["x-cache"] == "MISS"
        assert (await online_report(proxy))["outcomes"] == {}
        metrics = (await proxy.client.get("/metrics")).text
        assert "cache_proxy_online_decisions_total{" not in metrics


async def test_the_llm_judge_asks_the_engine_greedily_off_the_hit_path(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(online_config(judge="llm")) as proxy:
        await ask(proxy, f"{CACHED} [[reply:yes]]")
        explored = await ask(proxy, f"{PARAPHRASES[0]} [[reply:yes]]")
        assert explored.headers["x-cache"] == "MISS"
        assert proxy.upstream.completions_called == 3  # fill, the explored miss, the judge
        judge = proxy.upstream.last_body
        assert judge["temperature"] == 0.0 and judge["max_tokens"] == 3
        assert judge["stream"] is False and judge["model"] == "tiny"
        assert PARAPHRASES[0] in judge["messages"][0]["content"]
        assert (await online_report(proxy))["outcomes"] == {"correct": 1}


async def test_an_llm_judge_that_says_neither_yes_nor_no_gives_no_verdict(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(online_config(judge="llm")) as proxy:
        await ask(proxy, CACHED)
        await ask(proxy, PARAPHRASES[0])
        report = await online_report(proxy)
        assert report["outcomes"] == {"abstained": 1} and report["verdicts_in_window"] == 0


async def test_an_engine_answer_without_finish_reason_gives_no_verdict(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(online_config()) as proxy:
        await ask(proxy, CACHED)
        cut = await ask(proxy, f"{PARAPHRASES[0]} [[nofinish]]")  # no finish_reason: incomplete
        assert cut.status_code == 502, cut.text
        assert (await online_report(proxy))["outcomes"] == {"no_answer": 1}


class _HeldJudge:
    kind = "held"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0

    async def judge(self, case: JudgeCase) -> bool | None:
        self.running += 1
        await self.release.wait()
        return True


def _exploration(i: int) -> Exploration:
    answer = Answer("chat", "tiny", "cached", "stop")
    return Exploration(
        "acme", OnlineVerifyPolicy(enabled=True), 0.9, 0.1, f"e{i}", "q", "p", answer, "tiny"
    )


async def _answer() -> Answer:
    return Answer("chat", "tiny", "fresh", "stop")


async def test_judges_beyond_the_bound_are_skipped_not_queued() -> None:
    judge = _HeldJudge()
    explorer = Explorer(lambda config: judge, Metrics(), seed=1)
    for i in range(MAX_JUDGES_IN_FLIGHT + 3):
        explorer.explore(_exploration(i), _answer)
    await wait_until(lambda: judge.running == MAX_JUDGES_IN_FLIGHT, what="the judges to run")
    await wait_until(
        lambda: explorer.report("acme", OnlineVerifyPolicy())["outcomes"].get("skipped_busy") == 3,
        what="the extra explorations to be skipped",
    )
    judge.release.set()
    await explorer.wait_idle()
    assert explorer.report("acme", OnlineVerifyPolicy())["outcomes"] == {
        "skipped_busy": 3,
        "correct": MAX_JUDGES_IN_FLIGHT,
    }
    await explorer.aclose()


def test_a_new_bound_keeps_the_counts_and_moves_the_boundary() -> None:
    state = TenantEvidence(OnlineSettings(max_error=0.01, min_verdicts=30))
    for i in range(100):  # 100 right verdicts: the 95% upper bound is 0.026 > 1%
        state.record(OnlineVerdict(0.8, True, f"e{i}"))
    assert state.boundary == 1.0
    state.reconfigure(OnlineSettings(max_error=0.05, min_verdicts=30))
    assert state.boundary == 0.8 and state.verdicts == 100
    state.reconfigure(OnlineSettings(max_error=0.01, min_verdicts=30, confidence=0.8))
    assert state.boundary == 0.8  # 1% at 80% needs 71 clean verdicts, not 268


def test_the_window_forgets_the_oldest_verdicts(monkeypatch: Any) -> None:
    monkeypatch.setattr("cache_proxy.explore.VERDICTS_KEPT", 100)
    state = TenantEvidence(OnlineSettings(max_error=0.05, min_verdicts=30))
    for i in range(100):
        state.record(OnlineVerdict(0.8, False, f"old{i}"))  # an old regime: all wrong
    for i in range(100):
        state.record(OnlineVerdict(0.8, True, f"new{i}"))  # the traffic now: all right
    assert state.verdicts == 100 and state.boundary == 0.8


async def test_the_learned_score_tells_ambiguous_candidates_from_clear_ones() -> None:
    """At one similarity, a candidate with a runner-up close behind was judged wrong and one
    far ahead right: after the refit (in a thread) only the clear ones are served."""
    explorer = Explorer(lambda config: _HeldJudge(), Metrics(), seed=3)
    config = OnlineVerifyPolicy(enabled=True, max_error=0.05, audit_rate=0.0)
    for i in range(600):
        clear = i % 3 != 0
        margin = 0.10 + 0.0001 * i if clear else 0.005
        explorer.record("acme", OnlineVerdict(0.9, clear, f"e{i}", margin), config)
    state = explorer._tenants["acme"]
    await wait_until(lambda: state.scorer.fitted and not state.fitting, what="the refit")
    assert explorer.decide("acme", config, 0.9, 0.15, "new-1") == "serve"
    assert explorer.decide("acme", config, 0.9, 0.005, "new-2") == "explore"
    assert explorer.decide("acme", config, 0.5, 0.15, "new-3") == "miss"  # below the floor
    await explorer.aclose()


async def test_a_restarted_proxy_keeps_its_learned_boundary(
    proxy_factory: ProxyFactory, tmp_path: Any
) -> None:
    config = online_config(audit_rate=0.0)
    config["cache"] = {"snapshot_path": str(tmp_path / "cache.snapshot")}
    async with proxy_factory(config) as first:
        await ask(first, CACHED)
        for i in range(400):
            verdict = OnlineVerdict(0.5, True, f"e{i}", 0.1)
            await explorer(first).add_verdict("acme", verdict, config_of(first))
        assert (await online_report(first))["boundary"] == 0.5
    async with proxy_factory(config) as second:  # the entry and the verdicts come back

        async def learned() -> bool:
            return bool((await online_report(second))["verdicts_in_window"] == 400)

        await wait_until(learned, what="the verdicts to be read back")
        assert (await online_report(second))["boundary"] == 0.5
        assert (await ask(second, PARAPHRASES[0])).headers["x-cache"] == "HIT"


async def test_the_boundary_counts_exactly_the_window_through_refits(monkeypatch: Any) -> None:
    """Verdicts keep arriving while refits run in their thread and old ones leave the window:
    the boundary's counts stay those of the window (nothing counted twice or left behind)."""
    monkeypatch.setattr("cache_proxy.explore.VERDICTS_KEPT", 300)
    monkeypatch.setattr("cache_proxy.explore.REFIT_EVERY", 50)
    explorer = Explorer(lambda config: _HeldJudge(), Metrics(), seed=5)
    config = OnlineVerifyPolicy(enabled=True, max_error=0.05)
    draws = __import__("random").Random(5)
    for i in range(2000):
        margin = draws.random() * 0.2
        verdict = OnlineVerdict(0.8 + draws.random() * 0.2, draws.random() < 0.6 + 2 * margin,
                                f"e{i}", margin)  # fmt: skip
        explorer.record("acme", verdict, config)
        if i % 7 == 0:
            await asyncio.sleep(0)  # let a refit finish now and then, mid-stream
    await explorer.wait_idle()
    state = explorer._tenants["acme"]
    assert state.scorer.fitted and state.verdicts == 300
    assert state.tenant.verdicts == 300
    await explorer.aclose()

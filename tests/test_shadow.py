"""Shadow verification: sampled semantic hits re-asked of the engine in the background."""

from __future__ import annotations

import copy
from typing import Any

from cache_proxy.shadow import MIN_VERDICTS, tightened_threshold
from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat

CHAT = "/v1/chat/completions"
CACHED = "How do I reset my router password?"
PARAPHRASE = "How can I reset the password of my router?"


def shadow_config(min_agreement: float, **verify: Any) -> dict[str, Any]:
    config = copy.deepcopy(TWO_TENANTS)
    config["tenants"]["acme"]["verify"] = {
        "shadow_rate": 1.0,
        "shadow_min_agreement": min_agreement,
        **verify,
    }
    return config


async def ask(p: ProxyUnderTest, text: str, **params: Any) -> Any:
    response = await p.client.post(CHAT, json=chat(text, **params), headers=p.headers())
    await p.app.state.runtime.pipeline.shadow.wait_idle()
    return response


async def shadow_report(p: ProxyUnderTest, tenant: str = "acme") -> dict[str, Any]:
    return await p.tenant_report("shadow", tenant)


async def test_agreeing_answers_count_as_agreed(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(shadow_config(0.5)) as proxy:
        await ask(proxy, CACHED, temperature=0)
        hit = await ask(proxy, PARAPHRASE, temperature=0)
        assert hit.headers["x-cache"] == "HIT"
        assert proxy.upstream.completions_called == 2  # fill + the shadow request
        assert proxy.upstream.last_body["stream"] is False
        report = await shadow_report(proxy)
        assert report["outcomes"] == {"agreed": 1}
        assert report["suspect_rate"] == 0.0 and report["suspects"] == []


async def test_disagreeing_answers_are_suspect_and_kept_for_the_admin(
    proxy_factory: ProxyFactory,
) -> None:
    async with proxy_factory(shadow_config(0.999)) as proxy:
        filled = await ask(proxy, CACHED, temperature=0)
        hit = await ask(proxy, PARAPHRASE, temperature=0)
        served = hit.json()["choices"][0]["message"]["content"]
        assert served == filled.json()["choices"][0]["message"]["content"]  # still the hit
        report = await shadow_report(proxy)
        assert report["outcomes"] == {"suspect": 1} and report["suspect_rate"] == 1.0
        [suspect] = report["suspects"]
        assert suspect["query"] == PARAPHRASE and suspect["cached_prompt"] == CACHED
        assert 0.0 < suspect["agreement"] < 0.999
        metrics = (await proxy.client.get("/metrics")).text
        assert 'cache_proxy_shadow_checks_total{outcome="suspect",tenant="acme"} 1.0' in metrics
        assert (await shadow_report(proxy, "globex"))["suspects"] == []


async def test_only_greedy_semantic_hits_are_shadowed(proxy_factory: ProxyFactory) -> None:
    async with proxy_factory(shadow_config(0.5)) as proxy:
        # Sampling parameters are part of the partition: each pair fills, then hits.
        for params in ({}, {"temperature": 0.7}):  # sampled answers differ anyway: not checked
            await ask(proxy, CACHED, **params)
            assert (await ask(proxy, PARAPHRASE, **params)).headers["x-cache"] == "HIT"
        await ask(proxy, CACHED, temperature=0)
        exact = await ask(proxy, CACHED, temperature=0)  # the very prompt: nothing to check
        assert exact.headers["x-cache-match"] == "exact"
        assert proxy.upstream.completions_called == 3  # the three fills only
        assert (await shadow_report(proxy))["outcomes"] == {}


async def test_a_failing_shadow_request_never_reaches_the_client(
    proxy_factory: ProxyFactory,
) -> None:
    config = shadow_config(0.5, guards={"numbers": False})
    config["tenants"]["acme"]["threshold"] = 0.75
    async with proxy_factory(config) as proxy:
        await ask(proxy, CACHED, temperature=0)
        hit = await ask(proxy, f"{PARAPHRASE} [[500]]", temperature=0)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
        assert (await shadow_report(proxy))["outcomes"] == {"failed": 1}


async def test_shadow_report_needs_the_admin_token(proxy: ProxyUnderTest) -> None:
    response = await proxy.client.get("/admin/shadow", headers=proxy.headers())
    assert response.status_code == 403


def test_threshold_stays_without_evidence_of_excess_error() -> None:
    few_and_bad = [(0.93, True)] * (MIN_VERDICTS - 1)
    assert tightened_threshold(few_and_bad, 0.9, 0.05) == 0.9
    clean = [(0.9 + i / 1000, i % 25 == 0) for i in range(100)]  # 4% suspect, target 5%
    assert tightened_threshold(clean, 0.9, 0.05) == 0.9
    below_configured = [(0.8, True)] * 100 + [(0.95, False)] * 40
    assert tightened_threshold(below_configured, 0.9, 0.05) == 0.9


def test_threshold_rises_to_where_served_hits_were_within_target() -> None:
    # Below 0.95 half of the served hits were suspect, above it none were.
    low = [(0.90 + i / 1000, i % 2 == 0) for i in range(50)]
    high = [(0.95 + i / 1000, False) for i in range(40)]
    raised = tightened_threshold(low + high, 0.9, 0.05)
    assert 0.94 <= raised <= 0.95
    kept = [bad for s, bad in low + high if s >= raised]
    assert len(kept) >= MIN_VERDICTS and sum(kept) / len(kept) <= 0.05


def test_threshold_goes_to_identical_only_when_no_level_is_safe() -> None:
    assert tightened_threshold([(0.9 + i / 1000, True) for i in range(90)], 0.9, 0.05) == 1.0


async def test_suspect_verdicts_raise_the_tenants_threshold_only(
    proxy_factory: ProxyFactory,
) -> None:
    config = shadow_config(0.8, shadow_target_error=0.05)
    async with proxy_factory(config) as proxy:
        await ask(proxy, CACHED)
        assert (await ask(proxy, PARAPHRASE)).headers["x-cache"] == "HIT"
        shadow = proxy.app.state.runtime.pipeline.shadow
        for _ in range(MIN_VERDICTS + 10):  # as if the engine disagreed with many hits
            shadow.record("acme", 0.97, True)
            shadow.record("globex", 0.97, True)  # globex sets no target: nothing changes
        again = await ask(proxy, PARAPHRASE.replace("?", "??"))
        assert again.headers["x-cache"] == "MISS"
        report = await shadow_report(proxy)
        assert report["effective_threshold"] == 1.0 and report["threshold"] == 0.9
        await proxy.client.post(CHAT, json=chat(CACHED), headers=proxy.headers("sk-globex-1"))
        hit = await proxy.client.post(
            CHAT, json=chat(PARAPHRASE), headers=proxy.headers("sk-globex-1")
        )
        assert hit.headers["x-cache"] == "HIT"
        metrics = (await proxy.client.get("/metrics")).text
        assert 'cache_proxy_effective_threshold{tenant="acme"} 1.0' in metrics

"""Shadow verification: sampled semantic hits re-asked of the engine in the background."""

from __future__ import annotations

import copy
from typing import Any

from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat

CHAT = "/v1/chat/completions"
ADMIN = {"authorization": "Bearer admin-secret"}
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
    response = await p.client.get("/admin/shadow", headers=ADMIN)
    assert response.status_code == 200
    report: dict[str, Any] = response.json()["tenants"][tenant]
    return report


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

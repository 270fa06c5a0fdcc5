from __future__ import annotations

from tests.conftest import TWO_TENANTS, ProxyFactory, ProxyUnderTest, chat

ADMIN = {"authorization": "Bearer admin-secret"}
CHAT = "/v1/chat/completions"


async def fill(p: ProxyUnderTest, key: str, text: str, model: str = "tiny") -> None:
    body = {**chat(text), "model": model}
    await p.client.post("/v1/chat/completions", json=body, headers=p.headers(key))


async def test_admin_requires_the_token(proxy: ProxyUnderTest) -> None:
    assert (await proxy.client.get("/admin/stats")).status_code == 403
    tenant_key = proxy.headers()
    assert (await proxy.client.get("/admin/stats", headers=tenant_key)).status_code == 403
    assert (await proxy.client.get("/admin/stats", headers=ADMIN)).status_code == 200


async def test_admin_disabled_without_a_token(proxy_factory: ProxyFactory) -> None:
    config = {k: v for k, v in TWO_TENANTS.items() if k != "admin"}
    async with proxy_factory(config) as p:
        response = await p.client.post("/admin/flush", headers=ADMIN)
        assert response.status_code == 403
        assert "disabled" in response.json()["error"]["message"]


async def test_stats_per_tenant(proxy: ProxyUnderTest) -> None:
    await fill(proxy, "sk-acme-1", "stats question")
    await fill(proxy, "sk-acme-1", "stats question")
    stats = (await proxy.client.get("/admin/stats", headers=ADMIN)).json()["tenants"]
    assert stats["acme"]["entries"] == 1 and stats["acme"]["hit_rate"] == 0.5
    assert stats["globex"]["entries"] == 0 and stats["acme"]["threshold"] == 0.9


async def test_invalidate_by_tenant_and_model(proxy: ProxyUnderTest) -> None:
    await fill(proxy, "sk-acme-1", "q1", model="a")
    await fill(proxy, "sk-acme-1", "q2", model="b")
    await fill(proxy, "sk-globex-1", "q1", model="a")
    removed = await proxy.client.post(
        "/admin/invalidate", headers=ADMIN, json={"tenant": "acme", "model": "a"}
    )
    assert removed.json()["removed"] == 1
    stats = (await proxy.client.get("/admin/stats", headers=ADMIN)).json()["tenants"]
    assert stats["acme"]["entries"] == 1 and stats["globex"]["entries"] == 1


async def test_invalidate_unknown_tenant_is_400(proxy: ProxyUnderTest) -> None:
    response = await proxy.client.post("/admin/invalidate", headers=ADMIN, json={"tenant": "x"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "tenant"
    bad = await proxy.client.post("/admin/invalidate", headers=ADMIN, json={"tenant": 5})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tenant"


async def ask(p: ProxyUnderTest, key: str, text: str) -> dict[str, str]:
    response = await p.client.post("/v1/chat/completions", json=chat(text), headers=p.headers(key))
    return dict(response.headers)


async def test_invalidate_one_entry_of_one_tenant(proxy: ProxyUnderTest) -> None:
    missed = await ask(proxy, "sk-acme-1", "which answer was wrong")
    entry = missed["x-cache-entry"]
    await fill(proxy, "sk-acme-1", "another question")
    await fill(proxy, "sk-globex-1", "which answer was wrong")
    assert (await ask(proxy, "sk-acme-1", "which answer was wrong"))["x-cache-entry"] == entry
    body = {"tenant": "acme", "entry": entry}
    removed = await proxy.client.post("/admin/invalidate", headers=ADMIN, json=body)
    assert removed.status_code == 200 and removed.json()["removed"] == 1
    assert (await ask(proxy, "sk-acme-1", "which answer was wrong"))["x-cache"] == "MISS"
    assert (await ask(proxy, "sk-acme-1", "another question"))["x-cache"] == "HIT"
    assert (await ask(proxy, "sk-globex-1", "which answer was wrong"))["x-cache"] == "HIT"


async def test_invalidate_entry_needs_the_tenant(proxy: ProxyUnderTest) -> None:
    entry = (await ask(proxy, "sk-acme-1", "q1"))["x-cache-entry"]
    response = await proxy.client.post("/admin/invalidate", headers=ADMIN, json={"entry": entry})
    assert response.status_code == 400 and response.json()["error"]["param"] == "tenant"
    both = {"tenant": "acme", "entry": entry, "model": "tiny"}
    response = await proxy.client.post("/admin/invalidate", headers=ADMIN, json=both)
    assert response.status_code == 400 and response.json()["error"]["param"] == "entry"
    assert (await ask(proxy, "sk-acme-1", "q1"))["x-cache"] == "HIT"


async def test_no_store_miss_names_no_entry(proxy: ProxyUnderTest) -> None:
    headers = {**proxy.headers("sk-acme-1"), "cache-control": "no-store"}
    response = await proxy.client.post("/v1/chat/completions", json=chat("q9"), headers=headers)
    assert response.headers["x-cache"] == "MISS" and "x-cache-entry" not in response.headers


async def test_flush_empties_every_tenant(proxy: ProxyUnderTest) -> None:
    await fill(proxy, "sk-acme-1", "q1")
    await fill(proxy, "sk-globex-1", "q1")
    assert (await proxy.client.post("/admin/flush", headers=ADMIN)).json()["removed"] == 2
    again = await proxy.client.post(
        "/v1/chat/completions", json=chat("q1"), headers=proxy.headers()
    )
    assert again.headers["x-cache"] == "MISS"


async def test_an_empty_invalidate_body_is_a_400_not_a_flush(proxy: ProxyUnderTest) -> None:
    await proxy.client.post(CHAT, json=chat("Keep me"), headers=proxy.headers())
    empty = await proxy.client.post("/admin/invalidate", headers=ADMIN, content=b"")
    assert empty.status_code == 400 and empty.json()["error"]["type"] == "invalid_request_error"
    again = await proxy.client.post(CHAT, json=chat("Keep me"), headers=proxy.headers())
    assert again.headers["x-cache"] == "HIT"

"""Each optional template: absent with the defaults, present and wired when switched on."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.k8s.chart import FULLNAME, REPO, Doc, engine_deployment, named, of_kind, render
from tests.k8s.renders import STANDALONE

pytestmark = pytest.mark.k8s

ENGINE = f"{FULLNAME}-engine"
# option -> (--set items, kinds it adds)
OPTIONAL = {
    "ingress": (["ingress.enabled=true"], {"Ingress"}),
    "autoscaling": (["autoscaling.enabled=true"], {"HorizontalPodAutoscaler"}),
    "podDisruptionBudget": (["podDisruptionBudget.enabled=true"], {"PodDisruptionBudget"}),
    "serviceMonitor": (["serviceMonitor.enabled=true"], {"ServiceMonitor"}),
    "networkPolicy": (["networkPolicy.enabled=true"], {"NetworkPolicy"}),
    "secrets": (["secrets.create=true", "secrets.data.admin-token=x"], {"Secret"}),
    "pvc": (["engine.modelStorage.type=pvc"], {"PersistentVolumeClaim"}),
}
DASHBOARD = f"{FULLNAME}-dashboard"


def kinds(docs: list[Doc]) -> set[str]:
    return {doc["kind"] for doc in docs}


def test_default_render_has_only_the_core_objects() -> None:
    docs = render()
    assert sorted(kinds(docs)) == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]
    assert [c["metadata"]["name"] for c in of_kind(docs, "ConfigMap")] == [FULLNAME]


@pytest.mark.parametrize("option", list(OPTIONAL))
def test_optional_template_only_when_enabled(option: str) -> None:
    sets, added = OPTIONAL[option]
    assert not kinds(render()) & added
    assert kinds(render(sets=sets)) - kinds(render()) == added


def test_dashboard_only_when_enabled() -> None:
    assert DASHBOARD not in {c["metadata"]["name"] for c in of_kind(render(), "ConfigMap")}
    dashboard = named(render(sets=["dashboard.enabled=true"]), "ConfigMap", DASHBOARD)
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_service_account_can_be_external() -> None:
    docs = render(sets=["serviceAccount.create=false", "serviceAccount.name=llm-runner"])
    assert not of_kind(docs, "ServiceAccount")
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "llm-runner"


def test_ingress_routes_to_the_proxy_service_with_streaming_timeouts() -> None:
    docs = render(
        sets=[
            "ingress.enabled=true",
            "ingress.hosts[0].host=llm.corp",
            "ingress.hosts[0].paths[0].path=/",
            "ingress.hosts[0].paths[0].pathType=Prefix",
            "ingress.tls[0].secretName=llm-tls",
            "ingress.tls[0].hosts[0]=llm.corp",
        ]
    )
    (ingress,) = of_kind(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["llm.corp"], "secretName": "llm-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


@pytest.mark.parametrize(
    ("sets", "target"), [((), FULLNAME), (STANDALONE, ENGINE)], ids=["sidecar", "standalone"]
)
def test_hpa_scales_the_engine_deployment(sets: tuple[str, ...], target: str) -> None:
    docs = render(sets=[*sets, "autoscaling.enabled=true"])
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == target
    assert "replicas" not in named(docs, "Deployment", target)["spec"]  # the HPA owns it
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_hpa_custom_metric_from_prometheus_adapter() -> None:
    docs = render(
        sets=[
            "autoscaling.enabled=true",
            "autoscaling.customMetric.enabled=true",
            "autoscaling.targetCPUUtilizationPercentage=null",
        ]
    )
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "vllm_num_requests_waiting"


@pytest.mark.parametrize("sets", [(), STANDALONE], ids=["sidecar", "standalone"])
def test_pdb_selects_the_engine_pods(sets: tuple[str, ...]) -> None:
    docs = render(sets=[*sets, "podDisruptionBudget.enabled=true"])
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    labels = engine_deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_network_policy_keeps_the_engine_behind_the_proxy() -> None:
    docs = render(sets=[*STANDALONE, "networkPolicy.enabled=true"])
    front, engine = of_kind(docs, "NetworkPolicy")
    assert front["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    (rule,) = engine["spec"]["ingress"]
    proxy_labels = named(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= proxy_labels.items()


def test_helm_test_pod_checks_healthz_and_models_through_the_service() -> None:
    (pod,) = [
        d
        for d in of_kind(render(), "Pod")
        if d["metadata"]["annotations"].get("helm.sh/hook") == "test"
    ]
    script = pod["spec"]["containers"][0]["args"][0]
    base = f"http://{FULLNAME}:80"
    assert f'base="{base}"' in script
    assert '"$base/healthz"' in script and '"$base/v1/models"' in script
    assert "Authorization: Bearer" in script
    key = pod["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]
    assert key["key"] == "default-api-key"


# ---------------------------------------------------------------- Grafana dashboard --------

DOCUMENTED_METRICS = {
    "cache_proxy_requests_total",
    "cache_proxy_request_seconds_bucket",
    "cache_proxy_embed_seconds_bucket",
    "cache_proxy_search_seconds_bucket",
    "cache_proxy_entries",
    "cache_proxy_cached_completion_tokens_total",
    "cache_proxy_upstream_errors_total",
    "cache_proxy_shadow_checks_total",
    "cache_proxy_effective_threshold",
    "cache_proxy_speculative_aborts_total",
    "cache_proxy_online_boundary",
    "cache_proxy_online_decisions_total",
    "cache_proxy_online_verdicts_total",
}


def dashboard_json() -> dict[str, Any]:
    docs = render(sets=["dashboard.enabled=true"])
    text = named(docs, "ConfigMap", DASHBOARD)["data"]["vllm-semantic-cache.json"]
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_dashboard_panels_cover_the_brief() -> None:
    exprs = " ".join(t["expr"] for p in dashboard_json()["panels"] for t in p["targets"])
    used = set(re.findall(r"cache_proxy_[a-z_]+", exprs))
    assert used == DOCUMENTED_METRICS
    assert "sum by (tenant)" in exprs and "sum by (le, outcome)" in exprs
    assert 'outcome=~"hit_exact|hit_semantic"' in exprs


def test_dashboard_metrics_exist_in_the_proxy() -> None:
    """Every base metric name the dashboard queries is declared in cache_proxy/metrics.py."""
    source_path = REPO / "cache_proxy" / "metrics.py"
    if not source_path.exists():
        pytest.skip("cache_proxy/metrics.py not there yet")
    source = source_path.read_text()
    for name in DOCUMENTED_METRICS:
        base = re.sub(r"_(total|bucket)$", "", name)
        assert f'"{base}"' in source, base

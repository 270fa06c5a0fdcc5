"""The value sets every structural test renders: defaults, examples, every option switched on."""

from __future__ import annotations

from pathlib import Path

from tests.k8s.chart import EXAMPLES

# Everything optional on, so each template is validated at least once in both topologies.
ALL_ON = (
    "ingress.enabled=true",
    "ingress.tls[0].secretName=llm-tls",
    "ingress.tls[0].hosts[0]=llm.example.com",
    "autoscaling.enabled=true",
    "autoscaling.customMetric.enabled=true",
    "podDisruptionBudget.enabled=true",
    "serviceMonitor.enabled=true",
    "networkPolicy.enabled=true",
    "dashboard.enabled=true",
    "engine.modelStorage.type=pvc",
    "engine.modelStorage.initCopy.enabled=true",
    "engine.hfTokenSecret.name=hf-token",
    "engine.apiKeySecretKey=engine-api-key",
    "secrets.create=true",
    "secrets.data.admin-token=test-admin-token",
    "secrets.data.default-api-key=test-tenant-key",
    "secrets.data.engine-api-key=test-engine-key",
    "proxy.verifiers.existingClaim=trained-verifiers",
    "proxy.config.cache.snapshot_path=/var/lib/cache-proxy/snapshot.bin",
    "proxy.snapshot.existingClaim=cache-snapshot",
)
STANDALONE = ("topology=standalone", "engine.config.host=0.0.0.0")

# id -> (values files, --set items)
RENDERS: dict[str, tuple[tuple[Path, ...], tuple[str, ...]]] = {
    "default": ((), ()),
    **{path.stem: ((path,), ()) for path in EXAMPLES},
    "all-on-sidecar": ((), ALL_ON),
    "all-on-standalone": ((), ALL_ON + STANDALONE),
}

"""GPU scheduling knobs render for the GPU examples and are absent for the CPU one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import EXAMPLES, containers, engine_deployment, pod_spec, render, walk_strings

pytestmark = pytest.mark.k8s

BY_NAME = {path.name: path for path in EXAMPLES}
GPU_EXAMPLES = [
    BY_NAME["gpu-l4-awq.yaml"],
    BY_NAME["gpu-h100-tp2.yaml"],
    BY_NAME["gpu-multi-replica-redis.yaml"],
]
CPU_EXAMPLE = BY_NAME["cpu-dev.yaml"]


def example_values(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


@pytest.mark.parametrize("example", GPU_EXAMPLES, ids=lambda p: p.name)
def test_gpu_example_requests_gpus_on_gpu_nodes(example: Path) -> None:
    values = example_values(example)
    deployment = engine_deployment(render([example]))
    spec = pod_spec(deployment)
    engine = containers(deployment)["engine"]
    count = str(values["engine"]["gpu"]["count"])
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == count
    assert engine["resources"]["requests"]["nvidia.com/gpu"] == count
    # tensor parallel shards over exactly the GPUs the pod gets
    assert int(count) == values["engine"]["config"]["tensor_parallel_size"]
    assert spec["nodeSelector"]["nvidia.com/gpu.product"] == values["engine"]["gpu"]["product"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["runtimeClassName"] == "nvidia"
    shm = next(v for v in spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in engine["volumeMounts"]
    assert "--gpu-memory-utilization" in engine["args"]
    assert engine["image"].startswith("vllm/vllm-openai:v")


def test_cpu_example_has_no_gpu_anything() -> None:
    docs = render([CPU_EXAMPLE])
    deployment = engine_deployment(docs)
    spec = pod_spec(deployment)
    engine = containers(deployment)["engine"]
    assert not any("nvidia.com" in s for s in walk_strings(docs))
    for key in ("tolerations", "nodeSelector", "runtimeClassName", "affinity"):
        assert key not in spec, key
    assert "--gpu-memory-utilization" not in engine["args"]
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert "cpu" in engine["image"]


def test_default_values_request_one_gpu_without_pinning_a_product() -> None:
    spec = pod_spec(engine_deployment(render()))
    engine = next(c for c in spec["containers"] if c["name"] == "engine")
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nodeSelector" not in spec and "runtimeClassName" not in spec


def test_gpu_product_merges_with_a_user_node_selector() -> None:
    spec = pod_spec(
        engine_deployment(
            render(
                sets=[
                    "engine.gpu.product=NVIDIA-A100-SXM4-80GB",
                    "engine.nodeSelector.pool=llm",
                ]
            )
        )
    )
    product = "NVIDIA-A100-SXM4-80GB"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": product, "pool": "llm"}


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ("emptyDir", "emptyDir"),
        ("pvc", "persistentVolumeClaim"),
        ("hostPath", "hostPath"),
    ],
)
def test_model_storage_volume(storage: str, expected: str) -> None:
    docs = render(sets=[f"engine.modelStorage.type={storage}"])
    models = next(v for v in pod_spec(engine_deployment(docs))["volumes"] if v["name"] == "models")
    assert expected in models
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert len(claims) == (1 if storage == "pvc" else 0)
    if claims:
        assert models["persistentVolumeClaim"]["claimName"] == claims[0]["metadata"]["name"]


def test_existing_claim_is_used_and_not_created() -> None:
    docs = render(
        sets=["engine.modelStorage.type=pvc", "engine.modelStorage.pvc.existingClaim=weights"]
    )
    models = next(v for v in pod_spec(engine_deployment(docs))["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"]["claimName"] == "weights"
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


def test_init_container_fills_the_model_volume_first() -> None:
    spec = pod_spec(
        engine_deployment(
            render(
                sets=[
                    "engine.modelStorage.initCopy.enabled=true",
                    "engine.modelStorage.initCopy.command={sh,-c,cp -r /src/. /models/}",
                ]
            )
        )
    )
    (init,) = spec["initContainers"]
    assert init["command"] == ["sh", "-c", "cp -r /src/. /models/"]
    assert {"name": "models", "mountPath": "/models"} in init["volumeMounts"]
    assert "initContainers" not in pod_spec(engine_deployment(render()))

"""deploy/: the files Docker cannot check here (no Docker engine) stay consistent with the engine
configs, the proxy config schema and the Helm chart; the shell scripts parse."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cache_proxy.config import load_settings
from engine.config import load_engine_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILES = sorted(p for p in DEPLOY.glob("Dockerfile.*") if p.suffix != ".dockerignore")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def instructions(dockerfile: Path, keyword: str) -> list[str]:
    """Arguments of every KEYWORD instruction (continuation lines joined)."""
    text = dockerfile.read_text().replace("\\\n", " ")
    return [m.group(1) for m in re.finditer(rf"^{keyword}\s+(.+)$", text, re.M)]


def test_there_are_three_dockerfiles_each_with_an_ignore_file() -> None:
    names = {path.name for path in DOCKERFILES}
    assert names == {"Dockerfile.proxy", "Dockerfile.engine-gpu", "Dockerfile.engine-cpu"}
    for dockerfile in DOCKERFILES:
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text()
        assert ".venv" in ignore.split() and "build" in ignore.split()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_sources_exist(dockerfile: Path) -> None:
    for args in instructions(dockerfile, "COPY"):
        if args.startswith("--from="):  # from an earlier build stage, not the context
            continue
        *sources, _destination = shlex.split(args)
        for source in sources:
            if "*" not in source:  # optional files (README.md*) may be absent
                assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source}"


@pytest.mark.parametrize("name", ["Dockerfile.engine-gpu", "Dockerfile.engine-cpu"])
def test_engine_images_start_through_the_engine_config(name: str) -> None:
    entrypoint = instructions(DEPLOY / name, "ENTRYPOINT")[-1]
    assert '"-m", "engine.launch"' in entrypoint
    assert entrypoint.rstrip("]").rstrip().endswith('"--config"')


def test_gpu_image_matches_the_charts_vllm_image() -> None:
    values = yaml.safe_load((REPO / "k8s" / "chart" / "values.yaml").read_text())
    image = values["engine"]["image"]
    expected = f"ARG VLLM_IMAGE={image['repository']}:{image['tag']}"
    assert expected in (DEPLOY / "Dockerfile.engine-gpu").read_text()


def test_cpu_image_serves_the_config_make_run_uses() -> None:
    command = compose()["services"]["engine"]["command"]
    assert command == ["engine/configs/cpu-tiny.yaml"]
    cmd = instructions(DEPLOY / "Dockerfile.engine-cpu", "CMD")[-1]
    assert cmd == '["engine/configs/cpu-tiny.yaml"]'
    model = load_engine_config(REPO / command[0]).model
    assert f"--out {model}" in (DEPLOY / "Dockerfile.engine-cpu").read_text()


def test_compose_proxy_config_is_valid_and_points_at_the_engine_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEMO_API_KEY", "sk-test")
    monkeypatch.setenv("ADMIN_TOKEN", "admin-test")
    settings = load_settings(DEPLOY / "compose-proxy.yaml")
    engine_port = load_engine_config(REPO / "engine" / "configs" / "cpu-tiny.yaml").port
    assert settings.upstream.url == f"http://engine:{engine_port}"
    services = compose()["services"]
    assert set(services) == {"engine", "proxy"}
    assert services["proxy"]["depends_on"]["engine"]["condition"] == "service_healthy"
    assert "./compose-proxy.yaml:/etc/cache-proxy/config.yaml:ro" in services["proxy"]["volumes"]
    assert set(services["proxy"]["environment"]) == {"DEMO_API_KEY", "ADMIN_TOKEN"}


@pytest.mark.parametrize("script", sorted(DEPLOY.glob("*.sh")), ids=lambda p: p.name)
def test_shell_scripts_parse_and_fail_fast(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert "set -euo pipefail" in script.read_text()


@pytest.mark.parametrize("script", ["install-engine-venv.sh", "install-quant-venv.sh"])
def test_installers_require_a_venv_argument(script: str) -> None:
    result = subprocess.run(["bash", str(DEPLOY / script)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "usage" in result.stderr


def test_the_proxy_image_serves_without_torch_from_an_export_made_at_build() -> None:
    proxy = DEPLOY / "Dockerfile.proxy"
    _header, export_stage, serving_stage = proxy.read_text().split("\nFROM ")  # two stages
    assert "cache-proxy export-embedder" in export_stage and "torch" in export_stage
    assert "torch" not in serving_stage.split("COPY --from")[0].split("RUN pip install")[1]
    assert "RUN pip install .\n" in serving_stage  # the serving core: no extras
    assert "COPY --from=export /opt/cache-proxy /opt/cache-proxy" in serving_stage
    assert "CACHE_PROXY_CACHE_DIR=/opt/cache-proxy" in serving_stage

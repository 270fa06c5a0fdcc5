from __future__ import annotations

import os

import pytest

from tests.k8s.chart import helm_path


@pytest.fixture(autouse=True)
def _needs_helm(request: pytest.FixtureRequest) -> None:
    """No helm: skip locally; fail under CI (CI=true), where `make test` installs it first."""
    if helm_path() is not None:
        return
    message = "helm not installed: run `make helm` (bash k8s/tools/install-helm.sh build/tools)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)

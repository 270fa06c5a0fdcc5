"""values.schema.json's proxy-config parts are generated from the pydantic models: they must be
current (regenerate: `.venv/bin/python -m cache_proxy.config_schema`, or `make schema`)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from cache_proxy import config_schema
from cache_proxy.config import Settings, default_settings
from tests.k8s.chart import CHART

pytestmark = pytest.mark.k8s

SCHEMA_FILE = CHART / "values.schema.json"


def test_values_schema_is_generated_from_the_config_models() -> None:
    current = SCHEMA_FILE.read_text(encoding="utf-8")
    assert config_schema.render(current) == current, (
        "k8s/chart/values.schema.json is out of date with cache_proxy/config.py: "
        "run `.venv/bin/python -m cache_proxy.config_schema` (make schema)"
    )


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    del stale["properties"]["proxy"]["properties"]["config"]["properties"]["server"]
    path = tmp_path / "values.schema.json"
    path.write_text(json.dumps(stale, indent=2) + "\n", encoding="utf-8")
    assert config_schema.main(["--schema", str(path), "--check"]) == 1
    assert config_schema.main(["--schema", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == SCHEMA_FILE.read_text(encoding="utf-8")


def test_generated_parts_are_self_contained_draft_07() -> None:
    """Inlined (no $ref into pydantic's $defs, which values.schema.json does not have), and no
    keyword newer than the file's draft-07, which a validator would silently skip."""
    text = json.dumps(config_schema.proxy_schemas())
    for keyword in ("$ref", "$defs", "prefixItems", "unevaluatedProperties", "dependentSchemas"):
        assert f'"{keyword}"' not in text, keyword
    assert json.loads(SCHEMA_FILE.read_text())["$schema"].endswith("draft-07/schema#")


def test_proxy_defaults_fit_the_generated_schema() -> None:
    """The proxy's own defaults, as the chart would pass them (secrets via *_env), validate."""
    config, tenants = config_schema.proxy_schemas()
    dumped = default_settings().model_dump(mode="json", exclude={"open_access"})
    dumped["admin"]["token"] = None
    dumped["tenants"]["default"]["apiKeysFromSecret"] = ["default-api-key"]
    tenant_part = dumped.pop("tenants")
    jsonschema.Draft7Validator(config).validate(dumped)
    jsonschema.Draft7Validator(tenants).validate(tenant_part)
    # ...and every section of the file and tenant field is in the generated schema.
    assert set(config["properties"]) == set(Settings.model_fields) - {"tenants", "open_access"}

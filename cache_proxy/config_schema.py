"""The proxy-config parts of the Helm chart's values.schema.json, generated from the models.

`proxy.config` and `tenants` of k8s/chart/values.schema.json are `Settings.model_json_schema()`
(cache_proxy/config.py), inlined (no $ref: the chart tests read the nested properties) and
stripped of annotations (title, default, description: values.yaml documents the values), plus
the chart's own differences below (`_chart_overrides`). The rest of the file is hand-written
and kept as it is. Regenerate after changing a config model (tests/k8s checks it is current):

    .venv/bin/python -m cache_proxy.config_schema          # or: make schema
    .venv/bin/python -m cache_proxy.config_schema --check  # exit 1 when out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cache_proxy.config import Settings

VALUES_SCHEMA = Path(__file__).resolve().parents[1] / "k8s" / "chart" / "values.schema.json"
_ANNOTATIONS = ("title", "default", "description")

Schema = dict[str, Any]


def _inline(node: Any, defs: dict[str, Schema]) -> Any:
    """`node` with every `#/$defs/...` reference replaced by that definition, annotations gone."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    ref = node.get("$ref")
    if ref is not None:
        out.update(_inline(defs[ref.removeprefix("#/$defs/")], defs))
    for key, value in node.items():
        if key not in ("$ref", "$defs", *_ANNOTATIONS):
            out[key] = _inline(value, defs)
    if "type" in out:  # first, as a reader looks for it
        out = {"type": out.pop("type"), **out}
    return out


def _prop(schema: Schema, dotted: str) -> Schema:
    """The schema of a nested field: "cache.redis.url" -> properties.cache.properties.redis..."""
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]  # KeyError: a field the overrides name has gone
    return node


def _string_branch(schema: Schema) -> Schema:
    """The `{"type": "string"}` part of a `str` or `str | None` field."""
    branches: list[Schema] = schema.get("anyOf", [schema])
    for branch in branches:
        if branch.get("type") == "string":
            return branch
    raise ValueError(f"not a string field: {schema}")


def _chart_overrides(config: Schema, tenant: Schema) -> tuple[Schema, Schema]:
    """Where the chart's values differ from the config file: (proxy.config, tenants)."""
    props = config["properties"]
    # `tenants` is a top-level value (hot-reloaded, left out of the pods' checksum) and
    # `open_access` no config key (parse_settings refuses it); so no key is required here.
    del props["tenants"], props["open_access"]
    config.pop("required", None)
    config["description"] = (
        "Restart-requiring proxy config sections (docs/CONTRACTS.md); tenants are top-level."
    )
    # The URL schemes UpstreamSettings._http_url and RedisSettings._redis_url check: pydantic
    # cannot see into a validator.
    _string_branch(_prop(config, "upstream.url"))["pattern"] = "^https?://"
    _string_branch(_prop(config, "cache.redis.url"))["pattern"] = "^(redis|rediss|unix)://"
    _prop(config, "cache.redis.url")["description"] = (
        "clear text in the release; prefer proxy.redis.urlSecret"
    )
    # The chart mounts a volume at the snapshot file's directory: an absolute path, not in /.
    _string_branch(_prop(config, "cache.snapshot_path"))["pattern"] = "^/.+/[^/]+$"
    _prop(config, "cache.snapshot_path")["description"] = (
        "absolute file path (embedded backend); the chart mounts a volume at its directory"
    )
    # No clear-text secrets in the release: the engine key and the admin token come from the
    # keys Secret (engine.apiKeySecretKey, proxy.adminTokenSecretKey -> *_env), so only null.
    props["upstream"]["properties"]["api_key"] = {
        "type": "null",
        "description": "use engine.apiKeySecretKey (from a Secret)",
    }
    props["admin"]["properties"]["token"] = {
        "type": "null",
        "description": "use proxy.adminTokenSecretKey (from a Secret)",
    }

    # apiKeysFromSecret: keys of the keys Secret, which the chart injects as env vars and lists
    # in api_keys_env (literal api_keys stay allowed, in clear text).
    tenant["properties"]["apiKeysFromSecret"] = {
        "type": "array",
        "items": {"type": "string", "minLength": 1},
    }
    _prop(tenant, "api_keys")["description"] = (
        "literal keys: clear text in the release; prefer apiKeysFromSecret"
    )
    tenants: Schema = {
        "type": "object",
        # Settings._at_least_one, a validator pydantic cannot see.
        "minProperties": 1,
        # A tenant's name goes into env var names (TENANT_<NAME>_API_KEY_<N>).
        "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"},
        # null drops a tenant of the chart's defaults (helm's way to delete a key of a map).
        "additionalProperties": {"oneOf": [tenant, {"type": "null"}]},
        "description": "Hot-reloaded proxy tenants; set a tenant to null to drop a default one.",
    }
    return config, tenants


def proxy_schemas() -> tuple[Schema, Schema]:
    """The generated (proxy.config, tenants) subschemas of values.schema.json."""
    raw = Settings.model_json_schema()
    config: Schema = _inline(raw, raw.get("$defs", {}))
    return _chart_overrides(config, config["properties"]["tenants"]["additionalProperties"])


def render(current: str) -> str:
    """values.schema.json text `current` with its proxy-config parts regenerated."""
    schema = json.loads(current)
    config, tenants = proxy_schemas()
    schema["properties"]["proxy"]["properties"]["config"] = config
    schema["properties"]["tenants"] = tenants
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--schema", type=Path, default=VALUES_SCHEMA, help="values.schema.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args(argv)
    current = args.schema.read_text(encoding="utf-8")
    wanted = render(current)
    if wanted == current:
        return 0
    if args.check:
        print(f"{args.schema} is out of date: run python -m cache_proxy.config_schema")
        return 1
    args.schema.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

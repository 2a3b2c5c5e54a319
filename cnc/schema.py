"""Validation against `schema.yaml`, the one home of every setting's type and range.

params.yaml is checked against the schema's root, a run's settings and a synthetic
dataset's against its `$defs`; every violation is reported with its key path.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cnc.errors import SettingsError

SCHEMA_FILE = Path(__file__).with_name("schema.yaml")


@cache
def schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_FILE.read_text())


@cache
def _validator(definition: str | None) -> jsonschema.Draft202012Validator:
    root = schema()
    if definition is None:
        return jsonschema.Draft202012Validator(root)
    # Only the definition applies, not the root's own keywords.
    return jsonschema.Draft202012Validator(
        {"$ref": f"#/$defs/{definition}", "$defs": root["$defs"]}
    )


def properties(definition: str) -> list[str]:
    """The keys a `$defs` entry allows."""
    return list(schema()["$defs"][definition]["properties"])


# A float as YAML 1.2 writes it. YAML 1.1 (PyYAML, so Snakemake's config) reads `1e-4`
# as a string, while everyone writes a learning rate that way.
YAML12_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$")


def _as_number(text: str) -> float | None:
    return float(text.replace("_", "")) if YAML12_FLOAT.match(text.strip()) else None


def _coerce_numbers(instance: Any, validator: jsonschema.Draft202012Validator) -> None:
    """Where the schema wants a number and finds a string that YAML 1.2 reads as one,
    put the number in its place (in `instance` itself)."""
    while True:
        fixes = []
        for error in validator.iter_errors(instance):
            wanted = error.validator_value if error.validator == "type" else None
            wanted = [wanted] if isinstance(wanted, str) else (wanted or [])
            if "number" in wanted and isinstance(error.instance, str) and error.absolute_path:
                value = _as_number(error.instance)
                if value is not None:
                    fixes.append((list(error.absolute_path), value))
        if not fixes:
            return
        for path, value in fixes:
            node = instance
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value


def validate(instance: Any, source: str, definition: str | None = None, prefix: str = "") -> Any:
    """Raise SettingsError listing every violation as `<prefix><key.path>: <why>`; numbers
    written as YAML 1.2 reads them (`1e-4`) are accepted, made numbers in `instance`,
    which is returned."""
    validator = _validator(definition)
    if isinstance(instance, dict | list):
        _coerce_numbers(instance, validator)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = "\n  ".join(line for e in errors for line in _lines(prefix, e))
        raise SettingsError(f"{source}: invalid settings:\n  {lines}")
    return instance


def _lines(prefix: str, error: jsonschema.ValidationError) -> list[str]:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":  # name each unknown key, and the known ones
        known = ", ".join(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return [f"{_key(prefix, [*path, k])}: unknown key (known: {known})" for k in unknown]
    return [f"{_key(prefix, path)}: {error.message}"]


def _key(prefix: str, path: list[str]) -> str:
    return (prefix + ".".join(path)).rstrip(".") or "(top level)"

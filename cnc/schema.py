"""Validation against `schema.yaml`, the one home of every setting's type and range.

params.yaml is checked against the schema's root, a run's settings and a synthetic
dataset's against its `$defs`; every violation is reported with its key path.
"""

from __future__ import annotations

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


def validate(instance: Any, source: str, definition: str | None = None, prefix: str = "") -> None:
    """Raise SettingsError listing every violation as `<prefix><key.path>: <why>`."""
    errors = sorted(_validator(definition).iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = "\n  ".join(line for e in errors for line in _lines(prefix, e))
        raise SettingsError(f"{source}: invalid settings:\n  {lines}")


def _lines(prefix: str, error: jsonschema.ValidationError) -> list[str]:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":  # name each unknown key, and the known ones
        known = ", ".join(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return [f"{_key(prefix, [*path, k])}: unknown key (known: {known})" for k in unknown]
    return [f"{_key(prefix, path)}: {error.message}"]


def _key(prefix: str, path: list[str]) -> str:
    return (prefix + ".".join(path)).rstrip(".") or "(top level)"

"""params.yaml, the workflow's settings: reading and validation against cnc/schema.yaml.

Commands take params as `--params`: a file (params.yaml by default) or the same content
as inline JSON, which is how Snakemake passes its config (params.yaml with any
`--config` applied).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cnc.errors import SettingsError
from cnc.schema import YAML12_FLOAT, validate

DEFAULT = Path("params.yaml")


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading floats as YAML 1.2 does: `1e-4` is a number (YAML 1.1,
    PyYAML's default, reads it as a string)."""


YamlLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789."))


def read_yaml_value(text: str) -> Any:
    """One value written as YAML (`--set key=VALUE`)."""
    return yaml.load(text, Loader=YamlLoader)


class _UniqueKeyLoader(YamlLoader):
    """A YAML loader that refuses a key given twice (plain YAML keeps the last silently)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise SettingsError(
                f"{node.start_mark.name}, line {key_node.start_mark.line + 1}: key {key!r} "
                "is given twice; keep one"
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_structured(value: str | Path, option: str) -> Any:
    """Inline JSON (starting with "{"), or a JSON or YAML file's content."""
    text = str(value)
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{option}: not valid JSON ({exc})") from None
    path = Path(text)
    if not path.is_file():
        raise SettingsError(f"{option} {path}: not found; give a file or inline JSON")
    try:
        with open(path) as stream:  # a stream, so that errors name the file
            return yaml.load(stream, Loader=_UniqueKeyLoader)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML ({exc})") from None


def validate_params(params: Any, source: str = "params.yaml") -> None:
    """Raise SettingsError for every schema violation, each with its key path; a number
    that YAML 1.1 left a string (Snakemake's config: `lr: 1e-4`) becomes a number."""
    validate(params, source)


def load_params(value: str | Path = DEFAULT, scale: str | None = None) -> dict[str, Any]:
    """The validated params from a file or inline JSON; `scale` overrides its scale."""
    params = read_structured(value, "--params")
    if scale is not None and isinstance(params, dict):
        params = {**params, "scale": scale}
    validate_params(params, "--params (inline JSON)" if str(value).startswith("{") else str(value))
    return params


def check_file(path: str | Path = DEFAULT) -> None:
    """Read params.yaml as the commands do, so a key given twice is an error where a
    plain YAML reader (Snakemake's configfile) would keep the last value silently."""
    read_structured(path, str(path))

"""params.yaml: loading, validation against the workflow's JSON schema, data settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cnc.data.synthetic import SyntheticSpec
from cnc.errors import SettingsError

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA = PROJECT / "workflow" / "schemas" / "params.schema.yaml"


ConfigError = SettingsError  # a bad setting; the message names the file and the key


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def validate_params(params: dict[str, Any], source: str = "params.yaml") -> None:
    """Raise ConfigError for every schema violation, each with its key path."""
    schema = yaml.safe_load(SCHEMA.read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(params), key=lambda e: e.path
    )
    if errors:
        lines = "\n  ".join(f"{_key_path(e)}: {e.message}" for e in errors)
        raise ConfigError(f"{source}: invalid settings:\n  {lines}")


def _read_params(path: Path) -> Any:
    """params.yaml's content, not yet validated."""
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run from the project root or pass --params")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def _read_settings(settings_json: str) -> Any:
    """Settings the workflow passes as JSON on the command line, not yet validated."""
    try:
        return json.loads(settings_json)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--settings: not valid JSON ({exc})") from None


def load_params(path: Path = Path("params.yaml")) -> dict[str, Any]:
    path = Path(path)
    params = _read_params(path)
    validate_params(params, str(path))
    return params


def workflow_settings(
    params_file: Path | None, settings_json: str | None, scale: str | None = None
) -> dict[str, Any]:
    """The whole validated params.yaml, or the same given as JSON by the workflow;
    `scale` overrides the file's scale."""
    path = Path(params_file or "params.yaml")
    params = _read_params(path) if settings_json is None else _read_settings(settings_json)
    if scale is not None and isinstance(params, dict):
        params = {**params, "scale": scale}
    validate_params(params, "--settings" if settings_json else str(path))
    return params


def data_section(params_file: Path | None, settings_json: str | None) -> dict[str, Any]:
    """The `data` settings from params.yaml, or from JSON given by the workflow."""
    if settings_json is None:
        return load_params(params_file or Path("params.yaml"))["data"]
    data = _read_settings(settings_json)
    if not isinstance(data, dict):
        raise ConfigError("--settings: expected a JSON object like params.yaml's data section")
    return data


def _get(data: dict[str, Any], *keys: str) -> Any:
    node: Any = data
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"data.{'.'.join(keys[: depth + 1])}: missing setting")
        node = node[key]
    return node


def synthetic_spec(data: dict[str, Any]) -> SyntheticSpec:
    s = _get(data, "synthetic")
    try:
        return SyntheticSpec(
            seed=s["seed"],
            image_size=s["image_size"],
            classes=tuple(s["classes"]),
            train_per_class=s["train_per_class"],
            test_per_class=s["test_per_class"],
        )
    except KeyError as exc:
        raise ConfigError(f"data.synthetic.{exc.args[0]}: missing setting") from None


def dataset_root(data: dict[str, Any], name: str) -> Path:
    root = _get(data, name, "root")
    if root is None:
        raise ConfigError(f"data.{name}.root: not set; give the dataset folder in params.yaml")
    return Path(root)


def dataset_url(data: dict[str, Any], name: str) -> str:
    return _get(data, name, "url")


def downloads_dir(data: dict[str, Any]) -> Path:
    return Path(_get(data, "downloads"))

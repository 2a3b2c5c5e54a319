"""params.yaml: loading, validation against the workflow's JSON schema, data settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from cnc.data.synthetic import SyntheticSpec

PROJECT = Path(__file__).resolve().parents[1]
SCHEMA = PROJECT / "workflow" / "schemas" / "params.schema.yaml"


class ConfigError(ValueError):
    """A bad setting; the message names the file and the key."""


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


def load_params(path: Path = Path("params.yaml")) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run from the project root or pass --params")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    validate_params(params, str(path))
    return params


def synthetic_spec(params: dict[str, Any]) -> SyntheticSpec:
    s = params["data"]["synthetic"]
    return SyntheticSpec(
        seed=s["seed"],
        image_size=s["image_size"],
        classes=tuple(s["classes"]),
        train_per_class=s["train_per_class"],
        test_per_class=s["test_per_class"],
    )


def dataset_root(params: dict[str, Any], name: str) -> Path:
    root = params["data"][name]["root"]
    if root is None:
        raise ConfigError(f"params.yaml: data.{name}.root is not set; give the dataset folder")
    return Path(root)

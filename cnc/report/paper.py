"""The paper's published numbers, transcribed once into `paper_numbers.yaml`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

NUMBERS = Path(__file__).with_name("paper_numbers.yaml")
PAPER_METHOD = "CNC"  # the paper's own rows (its tables call the method CND)
BASELINES = ("RD4AD", "UniAD", "DiAD")


@cache
def numbers() -> dict[str, Any]:
    return yaml.safe_load(NUMBERS.read_text())


def _of(name: str) -> dict[str, Any]:
    """The paper's numbers for experiment `name` (a key of cnc.pipeline.experiments.EXPERIMENTS);
    empty for an experiment the paper does not have."""
    return numbers().get(name, {})


def methods(name: str) -> list[str]:
    """The methods of a per-class table (Tables 1 and 3), the paper's own last."""
    return list(_of(name).get("methods", {}))


def method_table(name: str, method: str = PAPER_METHOD) -> dict[str, Any]:
    """Per-class values, mean and mTotal of one method in Table 1 or 3."""
    return _of(name)["methods"][method]


def ablation_row(name: str, row: str) -> dict[str, Any] | None:
    """An ablation row's values and mean (Table 2); None where the paper has none."""
    return _of(name).get("rows", {}).get(row)


def grid_cell(name: str, key: str) -> list[float] | None:
    """`key` like 'T=5 K=2' or 'None' (Table 4); None where the paper has no value."""
    return _of(name).get("cells", {}).get(key)


def figure_point(name: str, key: str) -> float | None:
    """`key` like 'ViT-L-14-336 224' (Fig. 4's mTotal); None where the paper states none."""
    return _of(name).get("mtotal", {}).get(key)

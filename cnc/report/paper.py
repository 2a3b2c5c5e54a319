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


def method_table(table: str, method: str = PAPER_METHOD) -> dict[str, Any]:
    """Per-class values, mean and mTotal of one method in Table 1 or 3."""
    return numbers()[table]["methods"][method]


def methods(table: str) -> list[str]:
    return list(numbers()[table]["methods"])


def table2_row(row: str) -> dict[str, Any] | None:
    return numbers()["table2"]["rows"].get(row)


def table4_cell(key: str) -> list[float] | None:
    """`key` like 'T=5 K=2' or 'None'; None where the paper has no value."""
    return numbers()["table4"]["cells"].get(key)


def fig4_mtotal(backbone: str, resolution: int) -> float | None:
    return numbers()["fig4"]["mtotal"].get(f"{backbone} {resolution}")

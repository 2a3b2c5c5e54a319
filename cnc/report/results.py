"""Saved run results (metrics.json, train_log.csv), and their mean +- std over seeds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnc.errors import UserError
from cnc.evaluation.metrics import METRICS
from cnc.io import read_json
from cnc.runs import COST, METRICS_JSON, TRAIN_LOG, dataset_of


class ResultsError(UserError, FileNotFoundError):
    """A run's saved results are missing or do not fit together."""


@dataclass(frozen=True)
class Stat:
    """A value over seeds: the mean, and the sample SD when there are several seeds."""

    mean: float
    std: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        array = np.asarray(values, dtype=float)
        return cls(float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else None)


@dataclass(frozen=True)
class CellResult:
    """One table cell: per-class, mean and mTotal statistics over its runs (seeds)."""

    classes: dict[str, dict[str, Stat]]
    mean: dict[str, Stat]
    mtotal: Stat
    dataset: str | None  # what the runs were trained and evaluated on
    seeds: int


def read_metrics(runs_dir: Path, name: str) -> dict[str, Any]:
    path = Path(runs_dir) / name / METRICS_JSON
    if not path.is_file():
        raise ResultsError(
            f"{path}: missing; run the workflow (snakemake / dvc repro) or `cnc evaluate` first"
        )
    return read_json(path)


def cell_result(runs_dir: Path, names: tuple[str, ...]) -> CellResult:
    results = [read_metrics(runs_dir, n) for n in names]
    classes = list(results[0]["classes"])
    for name, r in zip(names, results, strict=True):
        if list(r["classes"]) != classes:
            raise ResultsError(f"{name}: its classes differ from {names[0]}'s; cannot average")
    return CellResult(
        classes={
            c: {m: Stat.of([r["classes"][c][m] for r in results]) for m in METRICS} for c in classes
        },
        mean={m: Stat.of([r["mean"][m] for r in results]) for m in METRICS},
        mtotal=Stat.of([r["mtotal"] for r in results]),
        dataset=dataset_of(Path(runs_dir) / names[0]),
        seeds=len(names),
    )


def read_cost(runs_dir: Path, name: str) -> dict[str, Any]:
    path = Path(runs_dir) / name / COST
    if not path.is_file():
        raise ResultsError(f"{path}: missing; its training job writes it (`cnc train`)")
    return read_json(path)


def train_log(runs_dir: Path, name: str) -> pd.DataFrame:
    path = Path(runs_dir) / name / TRAIN_LOG
    if not path.is_file():
        raise ResultsError(f"{path}: missing; train the run first")
    return pd.read_csv(path)

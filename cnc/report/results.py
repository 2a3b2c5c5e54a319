"""Saved run results (metrics.json, bootstrap.npz, cost.json, train_log.csv): their mean
and SD over seeds, and the bootstrap interval of the seed-averaged value."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnc.errors import UserError
from cnc.evaluation.defects import DEFECT_METRICS
from cnc.evaluation.metrics import METRICS
from cnc.evaluation.replicates import (
    Difference,
    Replicates,
    average,
    check_comparable,
    interval,
    load,
    paired,
)
from cnc.io import read_json
from cnc.runs import BOOTSTRAP, CONFIG, COST, METRICS_JSON, TRAIN_LOG, checked_metrics, dataset_of
from cnc.settings import SCORING


class ResultsError(UserError, FileNotFoundError):
    """A run's saved results are missing or do not fit together."""


@dataclass(frozen=True, eq=False)
class Stat:
    """A value over seeds: the mean, the sample SD when there are several seeds, and the
    bootstrap replicates of the seed-averaged value when the runs were bootstrapped."""

    mean: float
    std: float | None = None
    replicates: np.ndarray | None = None  # (B,)

    @classmethod
    def of(cls, values: list[float], replicates: np.ndarray | None = None) -> Stat:
        array = np.asarray(values, dtype=float)
        std = float(array.std(ddof=1)) if len(array) > 1 else None
        return cls(float(array.mean()), std, replicates)

    @classmethod
    def average(cls, stats: list[Stat]) -> Stat:
        """The mean of several values (e.g. of three metrics), replicate by replicate."""
        reps = [s.replicates for s in stats]
        mean_reps = None if any(r is None for r in reps) else np.mean(reps, axis=0)
        return cls(float(np.mean([s.mean for s in stats])), None, mean_reps)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % bootstrap interval of the (seed-averaged) value."""
        return None if self.replicates is None else interval(self.replicates)

    def versus(self, other: Stat) -> Difference | None:
        """This value minus `other`, paired over the same resamples (None without them)."""
        if self.replicates is None or other.replicates is None:
            return None
        return paired(self.mean, other.mean, self.replicates, other.replicates)


@dataclass(frozen=True, eq=False)
class CellResult:
    """One table cell: per-class, mean and mTotal statistics over its runs (seeds)."""

    classes: dict[str, dict[str, Stat]]
    mean: dict[str, Stat]
    mtotal: Stat
    dataset: str | None  # what the runs were trained and evaluated on
    seeds: int
    runs: tuple[str, ...] = ()
    replicates: Replicates | None = None  # seed-averaged; None if a run has none
    provenance: tuple[dict[str, Any], ...] = ()  # each run's (metrics.json, cnc.provenance)
    protocols: tuple[dict[str, Any], ...] = ()  # each run's evaluation protocol (metrics.json)

    def comparable(self, other: CellResult) -> None:
        """Raise unless paired differences with `other` are meaningful (same images)."""
        if self.replicates is not None and other.replicates is not None:
            check_comparable(other.replicates, self.replicates, other.runs[0], self.runs[0])


def read_metrics(runs_dir: Path, name: str) -> dict[str, Any]:
    """A run's metrics.json, checked to belong with the files beside it."""
    return checked_metrics(Path(runs_dir) / name)


def protocol_differences(protocols: dict[str, dict[str, Any]]) -> list[str]:
    """How runs' evaluation protocols differ where numbers must agree to compare
    (cnc.settings.SCORING): one line per key that differs, naming each run's value."""
    lines = []
    for key in SCORING:
        values = {run: p.get(key) for run, p in protocols.items()}
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            shown = ", ".join(f"{run} {v}" for run, v in values.items())
            lines.append(f"{key}: {shown}")
    return lines


def read_replicates(runs_dir: Path, names: tuple[str, ...]) -> Replicates | None:
    """The seed-averaged replicates of a cell's runs; None when any run has none (not
    bootstrapped, or evaluated before replicates were saved)."""
    paths = [Path(runs_dir) / n / BOOTSTRAP for n in names]
    if not all(p.is_file() for p in paths):
        return None
    reps = [load(p) for p in paths]
    if any(r.count == 0 for r in reps):
        return None
    return average(reps, list(names))


def cell_result(runs_dir: Path, names: tuple[str, ...]) -> CellResult:
    results = [read_metrics(runs_dir, n) for n in names]
    classes = list(results[0]["classes"])
    for name, r in zip(names, results, strict=True):
        if list(r["classes"]) != classes:
            raise ResultsError(f"{name}: its classes differ from {names[0]}'s; cannot average")
    reps = read_replicates(runs_dir, names)
    if reps is not None and list(reps.classes) != classes:
        raise ResultsError(f"{names[0]}: {BOOTSTRAP} and {METRICS_JSON} disagree on the classes")

    def column(values: np.ndarray | None, i: int) -> np.ndarray | None:
        return None if values is None else values[:, i]

    def of_class(c: str) -> np.ndarray | None:
        return None if reps is None else reps.of_class(c)

    mean_reps = None if reps is None else reps.mean()
    return CellResult(
        classes={
            c: {
                m: Stat.of([r["classes"][c][m] for r in results], column(of_class(c), i))
                for i, m in enumerate(METRICS)
            }
            for c in classes
        },
        mean={
            m: Stat.of([r["mean"][m] for r in results], column(mean_reps, i))
            for i, m in enumerate(METRICS)
        },
        mtotal=Stat.of([r["mtotal"] for r in results], None if reps is None else reps.mtotal()),
        dataset=dataset_of(Path(runs_dir) / names[0]),
        seeds=len(names),
        runs=tuple(names),
        replicates=reps,
        provenance=tuple(r.get("provenance") or {} for r in results),
        protocols=tuple(r["protocol"] for r in results),
    )


def defect_results(runs_dir: Path, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """{class: {defect type: {"images": n, metric: Stat over the runs, or None}}} from the
    runs' metrics.json (cnc.evaluation.defects)."""
    results = [read_metrics(runs_dir, n) for n in names]
    missing = [n for n, r in zip(names, results, strict=True) if "defects" not in r]
    if missing:
        raise ResultsError(
            f"{Path(runs_dir) / missing[0] / METRICS_JSON}: no per-defect-type metrics; "
            "evaluate the run again (`cnc evaluate`)"
        )
    out: dict[str, dict[str, Any]] = {}
    for cls, types in results[0]["defects"].items():
        for defect, first in types.items():
            values = [r["defects"][cls][defect] for r in results]
            stats = {
                m: None if first[m] is None else Stat.of([v[m] for v in values])
                for m in DEFECT_METRICS
            }
            out.setdefault(cls, {})[defect] = {"images": first["images"], **stats}
    return out


def trained_setting(runs_dir: Path, name: str, dotted: str) -> Any:
    """One setting a run was trained with (`backbone.resolution`, `train.epochs`: its
    config.json), None when the run has none; e.g. the resolution the smoke scale
    divides from the paper's."""
    path = Path(runs_dir) / name / CONFIG
    section, key = dotted.split(".")
    return read_json(path).get(section, {}).get(key) if path.is_file() else None


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

"""A run's bootstrap replicates (`bootstrap.npz`) and what they say: 95 % percentile
intervals, the average over seeds, and paired differences between runs.

The file holds, per class, B replicates of the five metrics (percent) and a digest of
the class's test images (which images, in which order, with which labels). Two runs
whose digests agree were evaluated on the same resamples (cnc.evaluation.bootstrap
seeds each class's draws by the bootstrap seed and the class name), so the difference
of their replicates is the bootstrap distribution of the difference of their metrics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnc.errors import BadFileError, UserError
from cnc.evaluation.metrics import METRICS
from cnc.io import atomic_path, read_arrays

LEVEL = 0.95  # of every interval
TAILS = (100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2)  # percentiles: 2.5, 97.5


class ReplicatesError(UserError, ValueError):
    """Replicates that are missing, unreadable or not comparable; the message says why."""


def image_digest(images: list[str], labels: np.ndarray) -> str:
    """Which test images, in which order, with which labels: equal digests, same
    resamples."""
    text = "\n".join(f"{name}\t{int(label)}" for name, label in zip(images, labels, strict=True))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class Replicates:
    """Bootstrap replicates of one run (or the average of several seeds' runs)."""

    classes: tuple[str, ...]
    values: np.ndarray  # (classes, B, 5) percent, in METRICS order
    images: tuple[str, ...]  # per class, image_digest of its test images
    seed: int  # of the draws

    @property
    def count(self) -> int:
        return int(self.values.shape[1])

    def of_class(self, cls: str) -> np.ndarray:
        """(B, 5)"""
        return self.values[self.classes.index(cls)]

    def mean(self) -> np.ndarray:
        """(B, 5): each metric's class mean, every class resampled independently."""
        return self.values.mean(axis=0)

    def mtotal(self) -> np.ndarray:
        """(B,): the mean of the five class means."""
        return self.mean().mean(axis=1)


def interval(replicates: np.ndarray) -> tuple[float, float]:
    """The 95 % percentile interval of (B,) replicates, those where the metric is
    undefined (NaN: no defect pixel drawn) left out."""
    low, high = np.percentile(replicates[~np.isnan(replicates)], TAILS)
    return float(low), float(high)


def shown_number(value: float, fmt: str = ".1f", signed: bool = False) -> str:
    """A number as formatted, never "-0.0"; `signed`: with its + sign."""
    text = f"{value:{fmt}}"
    text = text.lstrip("-") if float(text) == 0 else text  # never "-0.0"
    return f"+{text}" if signed and not text.startswith("-") else text


def interval_shown(
    value: float, low: float, high: float, fmt: str = ".1f", signed: bool = False
) -> tuple[str, bool]:
    """An interval as it is: ("±0.4", False) where it reaches as far on both sides of the
    value as shown, else ("[0.5, 41.6]", True): "12.3 ±20.5" of [0.5, 41.6] would read as
    if 12.3 - 20.5 were possible. `signed` (a difference): always the bounds, signed."""
    up, down = shown_number(high - value, fmt, False), shown_number(value - low, fmt, False)
    if signed or up != down:
        return f"[{shown_number(low, fmt, signed)}, {shown_number(high, fmt, signed)}]", True
    return f"±{shown_number((high - low) / 2, fmt, False)}", False


def intervals(reps: Replicates) -> dict[str, Any]:
    """metrics.json's `intervals`: [low, high] per class and metric, per class mean and
    for mTotal."""

    def pairs(values: np.ndarray) -> dict[str, list[float]]:
        return {m: list(interval(values[:, i])) for i, m in enumerate(METRICS)}

    return {
        "classes": {c: pairs(reps.of_class(c)) for c in reps.classes},
        "mean": pairs(reps.mean()),
        "mtotal": list(interval(reps.mtotal())),
    }


def save(path: Path, reps: Replicates) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            classes=np.array(reps.classes, dtype=str),
            metrics=np.array(METRICS, dtype=str),
            values=reps.values,
            images=np.array(reps.images, dtype=str),
            seed=np.array(reps.seed),
        )


def load(path: Path) -> Replicates:
    try:
        z = read_arrays(path)
        if tuple(z["metrics"]) != METRICS:
            raise ValueError(f"metrics {tuple(z['metrics'])}, expected {METRICS}")
        return Replicates(
            tuple(str(c) for c in z["classes"]),
            z["values"],
            tuple(str(d) for d in z["images"]),
            int(z["seed"]),
        )
    except (BadFileError, KeyError, ValueError) as exc:
        raise ReplicatesError(
            f"{path}: not readable bootstrap replicates ({exc}); run "
            f"`cnc evaluate {Path(path).parent}` again"
        ) from None


def check_comparable(a: Replicates, b: Replicates, a_name: str, b_name: str) -> None:
    """Paired differences need the same classes, test images, seed and count."""
    if a.classes != b.classes:
        raise ReplicatesError(f"{b_name}: its classes differ from {a_name}'s; not comparable")
    differ = [c for c, x, y in zip(a.classes, a.images, b.images, strict=True) if x != y]
    if differ:
        raise ReplicatesError(
            f"{b_name} and {a_name} were evaluated on different test images (class "
            f"{differ[0]}): a paired comparison needs the same images"
        )
    if (a.seed, a.count) != (b.seed, b.count):
        raise ReplicatesError(
            f"{b_name}: bootstrap seed {b.seed} with {b.count} replicates, {a_name}: seed "
            f"{a.seed} with {a.count}; evaluate both with the same evaluate.bootstrap and "
            "evaluate.bootstrap_seed"
        )


def average(reps: list[Replicates], names: list[str]) -> Replicates:
    """Replicates of the seed-averaged metrics: each replicate averaged over the runs
    (the same resamples in every run)."""
    for other, name in zip(reps[1:], names[1:], strict=True):
        check_comparable(reps[0], other, names[0], name)
    values = np.mean([r.values for r in reps], axis=0)
    return Replicates(reps[0].classes, values, reps[0].images, reps[0].seed)


@dataclass(frozen=True)
class Difference:
    """A minus B: the point difference, its 95 % paired interval and the two-sided p."""

    value: float
    low: float
    high: float
    p: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def paired(a: float, b: float, a_replicates: np.ndarray, b_replicates: np.ndarray) -> Difference:
    """The difference a - b of two point estimates, with the percentile interval of the
    replicates' differences and the bootstrap p-value of "no difference":
    min(1, 2 (1 + #{d* on the far side of 0}) / (B + 1)), the side the smaller one."""
    diffs = np.asarray(a_replicates) - np.asarray(b_replicates)
    diffs = diffs[~np.isnan(diffs)]
    low, high = interval(diffs)
    far = min(int((diffs <= 0).sum()), int((diffs >= 0).sum()))
    p = min(1.0, 2 * (1 + far) / (diffs.size + 1))
    return Difference(a - b, low, high, p)

"""`cnc bench bootstrap`: B bootstrap replicates of the five metrics of every class, the
class means and mTotal, on the MVTec-shaped set of `cnc bench metrics`, against the
naive way (the exact metrics of each replicate's duplicated test set), timed on a few
replicates and extrapolated to B.
"""

from __future__ import annotations

import resource
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from cnc.bench.metrics import ClassData, mvtec_like_set
from cnc.evaluation.bootstrap import class_generator, class_replicates, stratified_weights
from cnc.evaluation.metrics import METRICS, class_metrics
from cnc.evaluation.replicates import Replicates, intervals


@dataclass
class BootstrapBench:
    replicates: int
    seconds: float  # every class's replicates, the means, mTotal and all intervals
    peak_mb: float  # allocated by it (tracemalloc), the test set itself not included
    process_peak_mb: float  # the process's peak resident memory, the test set included
    naive_seconds: float  # extrapolated to `replicates`
    naive_timed: int  # replicates per class the naive way was timed on
    max_difference: dict[str, float]  # per metric, points, over the timed replicates
    mtotal_interval: tuple[float, float]


def naive_replicate(data: ClassData, weights: np.ndarray) -> np.ndarray:
    """The five metrics of one replicate: its test set duplicated, then evaluated."""
    maps, masks, labels = data
    chosen = np.repeat(np.arange(labels.size), weights)
    values = class_metrics(maps[chosen], masks[chosen], labels[chosen])
    return np.array([values[m] for m in METRICS])


def run(
    seed: int = 0, size: int = 256, scale: float = 1.0, replicates: int = 1000, naive: int = 2
) -> BootstrapBench:
    data = mvtec_like_set(seed, size, scale)
    tracemalloc.start()
    start = time.perf_counter()
    values = {
        cls: 100.0 * class_replicates(*arrays, replicates, seed, cls)
        for cls, arrays in data.items()
    }
    reps = Replicates(tuple(values), np.stack(list(values.values())), ("",) * len(values), seed)
    summary = intervals(reps)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    worst = np.zeros(len(METRICS))
    start = time.perf_counter()
    for cls, arrays in data.items():
        weights = stratified_weights(arrays[2], replicates, class_generator(seed, cls))
        for b in range(naive):
            exact = 100.0 * naive_replicate(arrays, weights[b])
            worst = np.maximum(worst, np.abs(exact - values[cls][b]))
    naive_seconds = (time.perf_counter() - start) / naive * replicates
    return BootstrapBench(
        replicates=replicates,
        seconds=seconds,
        peak_mb=peak / 2**20,
        process_peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        naive_seconds=naive_seconds,
        naive_timed=naive,
        max_difference=dict(zip(METRICS, worst.tolist(), strict=True)),
        mtotal_interval=tuple(summary["mtotal"]),
    )

"""Metrics of one run from its saved anomaly maps (never retrains, never loads the model).

Evaluation smooths the saved maps (EvaluateSettings), takes each image's score as the
maximum of its smoothed map, and computes the five metrics per class, their bootstrap
replicates and 95 % intervals (cnc.evaluation.bootstrap) and the metrics per defect type
(cnc.evaluation.defects). It imports neither torch nor scikit-learn nor pandas: one
process per run starts in a fraction of a second.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnc import provenance
from cnc.evaluation.bootstrap import class_replicates
from cnc.evaluation.defects import defect_metrics
from cnc.evaluation.maps import (
    class_files,
    image_scores_from_maps,
    read_class_maps,
    read_protocol,
    smooth,
)
from cnc.evaluation.metrics import METRICS, MetricError, class_metrics
from cnc.evaluation.replicates import Replicates, image_digest, intervals, save
from cnc.io import atomic_path, write_json
from cnc.runs import BOOTSTRAP, HEATMAPS_DIR, MAPS_DIR, METRICS_CSV, METRICS_JSON
from cnc.settings import EvaluateSettings


def summarise(per_class: dict[str, dict[str, float]]) -> tuple[dict[str, float], float]:
    """Unweighted mean over classes of each metric, and mTotal, the mean of those means."""
    mean = {k: float(np.mean([v[k] for v in per_class.values()])) for k in METRICS}
    return mean, float(np.mean(list(mean.values())))


def evaluate_run(
    run_dir: Path, settings: EvaluateSettings | None = None, heatmaps: bool = True
) -> dict[str, Any]:
    """Write `metrics.json` (percentages, full precision; intervals; per defect type),
    `metrics.csv`, the replicates (`bootstrap.npz`) and heat maps."""
    began = time.perf_counter()
    run_dir = Path(run_dir)
    settings = settings or EvaluateSettings()
    maps_dir = run_dir / MAPS_DIR
    protocol = {**read_protocol(maps_dir), **settings.protocol()}
    per_class: dict[str, dict[str, float]] = {}
    replicates, images, defects = [], [], {}
    for cls, path in class_files(maps_dir).items():
        data = read_class_maps(path)
        data.maps = smooth(data.maps, settings.sigma)
        try:
            values = class_metrics(data.maps, data.masks, data.labels)
        except MetricError as exc:
            raise MetricError(f"{path}: {exc}") from None
        per_class[cls] = {k: 100.0 * v for k, v in values.items()}
        replicates.append(
            100.0
            * class_replicates(
                data.maps, data.masks, data.labels, settings.bootstrap, settings.bootstrap_seed, cls
            )
        )
        images.append(image_digest(data.image_ids(), data.labels))
        defects[cls] = defect_metrics(data)
        if heatmaps:
            from cnc.evaluation.heatmaps import class_heatmap  # matplotlib: only when drawn

            scores = image_scores_from_maps(data.maps)
            out = run_dir / HEATMAPS_DIR / f"{cls}.png"
            class_heatmap(data, scores, out, f"{run_dir.name}: {cls}")
    mean, mtotal = summarise(per_class)
    seed = settings.bootstrap_seed
    reps = Replicates(tuple(per_class), np.stack(replicates), tuple(images), seed)
    result = {
        "run": run_dir.name,
        "units": "percent",
        "protocol": protocol,
        "classes": per_class,
        "mean": mean,
        "mtotal": mtotal,
        "intervals": intervals(reps) if reps.count else None,  # 95 %, from bootstrap.npz
        "defects": defects,
        "provenance": {
            "train": provenance.read_training(run_dir),
            "evaluate": provenance.step_record(None, time.perf_counter() - began),
        },
    }
    with atomic_path(run_dir / METRICS_CSV) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", *METRICS])
        for cls, values in [*per_class.items(), ("mean", mean)]:
            writer.writerow([cls, *(repr(values[k]) for k in METRICS)])
    save(run_dir / BOOTSTRAP, reps)
    write_json(run_dir / METRICS_JSON, result)
    return result

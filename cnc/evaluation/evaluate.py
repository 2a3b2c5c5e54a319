"""Metrics of one run from its saved anomaly maps (never retrains, never loads the model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnc.evaluation.heatmaps import class_heatmap
from cnc.evaluation.maps import class_files, read_class_maps, read_protocol
from cnc.evaluation.metrics import METRICS, MetricError, class_metrics
from cnc.io import atomic_path, write_json
from cnc.runs import HEATMAPS_DIR, MAPS_DIR, METRICS_CSV, METRICS_JSON


def summarise(per_class: dict[str, dict[str, float]]) -> tuple[dict[str, float], float]:
    """Unweighted mean over classes of each metric, and mTotal, the mean of those means."""
    mean = {k: float(np.mean([v[k] for v in per_class.values()])) for k in METRICS}
    return mean, float(np.mean(list(mean.values())))


def evaluate_run(run_dir: Path, heatmaps: bool = True) -> dict[str, Any]:
    """Write `metrics.json` (percentages, full precision), `metrics.csv` and heat maps."""
    run_dir = Path(run_dir)
    maps_dir = run_dir / MAPS_DIR
    protocol = read_protocol(maps_dir)
    per_class: dict[str, dict[str, float]] = {}
    for cls, path in class_files(maps_dir).items():
        data = read_class_maps(path)
        try:
            values = class_metrics(data.maps, data.masks, data.labels, data.image_scores)
        except MetricError as exc:
            raise MetricError(f"{path}: {exc}") from None
        per_class[cls] = {k: 100.0 * v for k, v in values.items()}
        if heatmaps:
            class_heatmap(data, run_dir / HEATMAPS_DIR / f"{cls}.png", f"{run_dir.name}: {cls}")
    mean, mtotal = summarise(per_class)
    result = {
        "run": run_dir.name,
        "units": "percent",
        "protocol": protocol,
        "classes": per_class,
        "mean": mean,
        "mtotal": mtotal,
    }
    table = pd.DataFrame.from_dict({**per_class, "mean": mean}, orient="index")[list(METRICS)]
    table.index.name = "class"
    with atomic_path(run_dir / METRICS_CSV) as tmp:
        table.to_csv(tmp)
    write_json(run_dir / METRICS_JSON, result)
    return result

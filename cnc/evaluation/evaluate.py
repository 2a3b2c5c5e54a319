"""Metrics of one run from its saved anomaly maps (never retrains, never loads the model).

Evaluation smooths the saved maps (EvaluateSettings), takes each image's score as the
maximum of its smoothed map, and computes the five metrics per class, their bootstrap
replicates and 95 % intervals (cnc.evaluation.bootstrap) and the metrics per defect type
(cnc.evaluation.defects). It imports neither torch nor scikit-learn nor pandas: one
process per run starts in a fraction of a second.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnc import provenance
from cnc.evaluation.bootstrap import class_replicates
from cnc.evaluation.defects import defect_metrics
from cnc.evaluation.maps import (
    MapsError,
    class_files,
    image_scores_from_maps,
    read_class_maps,
    read_protocol,
    smooth,
)
from cnc.evaluation.metrics import METRICS, MetricError, class_metrics
from cnc.evaluation.replicates import Replicates, image_digest, intervals, save
from cnc.io import Outputs, committed, remove_stale_temporaries, sha256_file
from cnc.runs import (
    BOOTSTRAP,
    EVALUATION_OUTPUTS,
    HEATMAPS_DIR,
    MAPS_DIR,
    METRICS_CSV,
    METRICS_JSON,
    PROTOCOL,
    run_lock,
)
from cnc.settings import EvaluateSettings


def summarise(per_class: dict[str, dict[str, float]]) -> tuple[dict[str, float], float]:
    """Unweighted mean over classes of each metric, and mTotal, the mean of those means."""
    mean = {k: float(np.mean([v[k] for v in per_class.values()])) for k in METRICS}
    return mean, float(np.mean(list(mean.values())))


NOT_DRAWN = "README.txt"  # in the heat-map folder of a run evaluated without them


def evaluate_run(
    run_dir: Path, settings: EvaluateSettings | None = None, heatmaps: bool = True
) -> dict[str, Any]:
    """Write `metrics.json` (percentages, full precision; intervals; per defect type),
    `metrics.csv`, the replicates (`bootstrap.npz`) and heat maps, holding the run
    (cnc.runs.run_lock) so that no training or inference changes the maps meanwhile.

    The outputs are committed together (cnc.io.committed): metrics.json last, carrying the
    digests of the maps' protocol.json it was computed from and of the files written with
    it, which every reader checks (cnc.runs.checked_metrics)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MapsError(f"{run_dir}: no such run folder; train the run first (`cnc train`)")
    with run_lock(run_dir, purpose="evaluation"):
        remove_stale_temporaries(run_dir)
        remove_stale_temporaries(run_dir / HEATMAPS_DIR)
        with committed(run_dir / METRICS_JSON) as outputs:
            return _evaluate(run_dir, settings or EvaluateSettings(), heatmaps, outputs)


def _evaluate(
    run_dir: Path, settings: EvaluateSettings, heatmaps: bool, outputs: Outputs
) -> dict[str, Any]:
    began = time.perf_counter()
    maps_dir = run_dir / MAPS_DIR
    recorded = read_protocol(maps_dir)
    computed_from = sha256_file(maps_dir / PROTOCOL)  # the run is held: it stays the same
    protocol = {k: v for k, v in recorded.items() if k not in ("maps", "model")}
    protocol |= settings.protocol()
    # always replaced: empty when none are drawn (an earlier evaluation's are not this one's)
    folder = outputs.folder(run_dir / HEATMAPS_DIR)
    drawn = folder if heatmaps else None
    if drawn is None:  # says why it is empty (and DVC does not warn of an empty output)
        (folder / NOT_DRAWN).write_text(
            f"No heat maps were drawn for {run_dir.name} (the workflow draws those of "
            "evaluate.heatmaps: main = the runs of Tables 1 and 3). Draw them with: "
            f"cnc evaluate {run_dir}\n"
        )
    per_class: dict[str, dict[str, float]] = {}
    replicates, images, defects = [], [], {}
    digests = recorded.get("maps") or {}
    for cls, path in class_files(maps_dir, recorded).items():
        data = read_class_maps(path, digests.get(cls))
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
        if drawn is not None:
            from cnc.evaluation.heatmaps import class_heatmap  # matplotlib: only when drawn

            scores = image_scores_from_maps(data.maps)
            class_heatmap(data, scores, drawn / f"{cls}.png", f"{run_dir.name}: {cls}")
    mean, mtotal = summarise(per_class)
    seed = settings.bootstrap_seed
    reps = Replicates(tuple(per_class), np.stack(replicates), tuple(images), seed)
    with open(outputs.file(run_dir / METRICS_CSV), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["class", *METRICS])
        for cls, values in [*per_class.items(), ("mean", mean)]:
            writer.writerow([cls, *(repr(values[k]) for k in METRICS)])
    save(outputs.file(run_dir / BOOTSTRAP), reps)
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
        # What this result was computed from and written with (cnc.runs.checked_metrics).
        "files": {
            "maps": computed_from,
            "outputs": {
                name: sha256_file(outputs.staged[run_dir / name]) for name in EVALUATION_OUTPUTS
            },
        },
    }
    metrics = outputs.file(run_dir / METRICS_JSON)
    metrics.write_text(json.dumps(result, indent=2) + "\n")
    return result

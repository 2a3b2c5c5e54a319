"""`cnc predict`: score new images with a trained run; overlays and scores.csv/.json.

Scoring: as the run's test images were (its map size, and the smoothing its metrics were
computed with: metrics.json's protocol, the default before any evaluation), so an image
gets the score the evaluation gave it.

Scale: the run's normal training images, scored the same way once and kept per class in
calibration.json (recomputed when the protocol changes). An image's class is `--class`,
or, for a path in the MVTec layout (`<class>/{train,test}/<folder>/<image>`), that class
folder when the run was trained on it; otherwise the scale of all classes together. The
colour scale runs from the median training pixel to the highest training image score of
that scale; "x max normal" is the score over that highest score.

Decision (optional): an image is anomalous when its score exceeds the `quantile` of its
scale's normal training image scores. The model saw those images in training, so they
score lower than unseen normal images would: 1.0 (above every one of them) is the least
optimistic choice.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from cnc.data.dataset import AnomalyDataset, run_split
from cnc.data.images import describe, display_image
from cnc.data.layout import IMAGE_SUFFIXES, Sample, discover_classes
from cnc.errors import AlreadyExistsError, MissingFileError, UsageError
from cnc.evaluation.maps import image_scores_from_maps, smooth
from cnc.inference.infer import load_run, score_batch
from cnc.io import (
    atomic_path,
    committed,
    read_json,
    remove_stale_temporaries,
    write_json,
    write_text,
)
from cnc.model.build import Network
from cnc.runs import CALIBRATION, METRICS_JSON, run_lock
from cnc.settings import EvaluateSettings
from cnc.training.devices import pick_device

SCORES_CSV, SCORES_JSON = "scores.csv", "scores.json"
ALL_CLASSES = "all classes"
CALIBRATION_LAYOUT = 2  # per-class scales; an older calibration.json is recomputed


@dataclass(frozen=True)
class Scale:
    """Normal training image statistics of one class (or of all): the colour scale."""

    name: str
    low: float  # median of the training images' median pixels
    high: float  # highest training image score
    scores: np.ndarray  # every training image score, sorted

    def threshold(self, quantile: float) -> float:
        return float(np.quantile(self.scores, quantile))


@dataclass(frozen=True)
class Prediction:
    image: Path
    cls: str | None
    scale: str  # the class whose scale was used, or ALL_CLASSES
    score: float
    relative: float  # score / highest normal training score of the scale
    threshold: float | None
    anomalous: bool | None
    overlay: Path


def collect_images(inputs: list[Path]) -> tuple[list[Path], Path]:
    """The images of `inputs` (files, or folders searched recursively) and the folder the
    output tree mirrors: the deepest one holding every input (a folder input keeps its
    name in the mirror)."""
    images: list[Path] = []
    for given in inputs:
        path = Path(given).absolute()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{given}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
            images += found
        elif path.is_file():
            images.append(path)
        else:
            raise MissingFileError(f"{given}: not found")
    images = list(dict.fromkeys(images))
    anchors = [str(p.parent) for p in images]
    anchors += [str(Path(g).absolute().parent) for g in inputs if Path(g).is_dir()]
    return images, Path(os.path.commonpath(anchors))


def _check_images(images: list[Path]) -> None:
    for path in images:
        describe(path)  # decodes it: a damaged file is named before the model loads


def image_class(path: Path, classes: list[str], given: str | None) -> str | None:
    """`given`, or the class folder of an MVTec-layout path when the run knows the class."""
    if given is not None:
        return given
    parts = Path(path).parts
    if len(parts) >= 4 and parts[-3] in ("train", "test") and parts[-4] in classes:
        return parts[-4]
    return None


def scoring_protocol(run: Network, run_dir: Path) -> dict[str, Any]:
    """How the run's test images were scored: map size and smoothing."""
    metrics = Path(run_dir) / METRICS_JSON
    recorded = read_json(metrics).get("protocol", {}) if metrics.is_file() else {}
    sigma = recorded.get("smoothing_sigma", EvaluateSettings().sigma)
    return {**run.settings.infer.protocol(), **EvaluateSettings(sigma=sigma).protocol()}


def _scale_entry(medians: list[float], scores: list[float]) -> dict[str, Any]:
    return {
        "images": len(scores),
        "pixel_median": float(np.median(medians)),
        "image_score_max": float(max(scores)),
        "image_scores": sorted(float(s) for s in scores),
    }


def calibrate(run: Network, protocol: dict[str, Any]) -> dict[str, Any]:
    """Score statistics of the run's (normal) training images under `protocol`, per class
    and over all classes."""
    encoder, infer = run.encoder, run.settings.infer
    dataset = run_split(run.settings.data, "train", encoder.resolution, encoder.mean_std)
    loader = torch.utils.data.DataLoader(dataset, batch_size=infer.batch_size)
    medians: dict[str, list[float]] = {}
    scores: dict[str, list[float]] = {}
    with torch.no_grad():
        for batch in loader:
            maps = smooth(score_batch(run, batch["image"], infer), protocol["smoothing_sigma"])
            batch_medians = np.median(maps.reshape(len(maps), -1), axis=1)
            for cls, median, score in zip(
                batch["cls"], batch_medians, image_scores_from_maps(maps), strict=True
            ):
                medians.setdefault(cls, []).append(float(median))
                scores.setdefault(cls, []).append(float(score))
    every = [m for ms in medians.values() for m in ms], [s for ss in scores.values() for s in ss]
    return {
        **protocol,
        "layout": CALIBRATION_LAYOUT,
        "classes": {c: _scale_entry(medians[c], scores[c]) for c in sorted(scores)},
        "all": _scale_entry(*every),
    }


def load_scales(run: Network, run_dir: Path, protocol: dict[str, Any]) -> dict[str, Scale]:
    """Scales by class name and ALL_CLASSES, from calibration.json or computed afresh."""
    cached = Path(run_dir) / CALIBRATION
    calibration = read_json(cached) if cached.is_file() else {}
    expected = {**protocol, "layout": CALIBRATION_LAYOUT}
    if any(calibration.get(k) != v for k, v in expected.items()):  # none yet, or stale
        calibration = calibrate(run, protocol)
        write_json(cached, calibration)
    entries = {**calibration["classes"], ALL_CLASSES: calibration["all"]}
    return {
        name: Scale(name, e["pixel_median"], e["image_score_max"], np.array(e["image_scores"]))
        for name, e in entries.items()
    }


def _overlay(image: Path, anomaly: np.ndarray, scale: Scale, out: Path, title: str) -> None:
    picture = display_image(image, anomaly.shape[0])
    fig = Figure(figsize=(6.4, 3.2))
    left, right = fig.subplots(1, 2)
    left.imshow(picture)
    left.set_title(image.name, fontsize=8)
    right.imshow(picture)
    high = max(scale.high, scale.low + 1e-6)
    shown = right.imshow(anomaly, cmap="jet", vmin=scale.low, vmax=high, alpha=0.5)
    right.set_title(title, fontsize=8)
    for ax in (left, right):
        ax.axis("off")
    bar = fig.colorbar(shown, ax=right, fraction=0.046)
    bar.set_label(f"anomaly score (scale: {scale.name})", fontsize=7)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def _scores_csv(predictions: list[Prediction]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(predictions[0])), lineterminator="\n")
    writer.writeheader()
    for p in predictions:
        writer.writerow({**asdict(p), "cls": p.cls or ""})
    return buffer.getvalue()


def predict(
    run_dir: Path,
    inputs: list[Path],
    out_dir: Path,
    device: str = "cpu",
    overwrite: bool = False,
    cls: str | None = None,
    quantile: float | None = None,
) -> list[Prediction]:
    """Score every image of `inputs`; write OUT/<mirrored path>_anomaly.png overlays and
    OUT/scores.csv, OUT/scores.json. Checks every input and output before loading the
    model, and replaces nothing without `overwrite`."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if quantile is not None and not 0.0 < quantile <= 1.0:
        raise UsageError(f"--threshold-quantile {quantile}: give a value in (0, 1], e.g. 1.0")
    images, base = collect_images(inputs)
    _check_images(images)
    targets = [_target(p, base, out_dir) for p in images]
    owners: dict[Path, Path] = {}
    for path, target in zip(images, targets, strict=True):
        if target in owners:
            raise UsageError(f"{path} and {owners[target]}: both would write {target}; rename one")
        owners[target] = path
    written = [*targets, out_dir / SCORES_CSV, out_dir / SCORES_JSON]
    existing = [t for t in written if t.exists()]
    if existing and not overwrite:
        raise AlreadyExistsError(f"{existing[0]}: exists; pass --overwrite or choose another --out")
    with run_lock(run_dir, shared=True, purpose="a prediction"):
        run = load_run(run_dir, pick_device(device))
        known = discover_classes(Path(run.settings.data.root), run.settings.data.classes or None)
        if cls is not None and cls not in known:
            raise UsageError(
                f"--class {cls}: the run was not trained on it; one of {', '.join(known)}"
            )
        remove_stale_temporaries(out_dir, legacy=False)
        with committed(out_dir / SCORES_JSON) as outputs:  # scores.json last
            staged = outputs.within(out_dir)
            drawn, protocol = _predict(run, run_dir, images, base, staged, known, cls, quantile)
            results = [replace(r, overlay=out_dir / r.overlay.relative_to(staged)) for r in drawn]
            write_text(staged / SCORES_CSV, _scores_csv(results))
            record = {
                "run": str(run_dir.absolute()),
                "protocol": protocol,
                "threshold_quantile": quantile,
                "images": [
                    {**asdict(p), "image": str(p.image), "overlay": str(p.overlay)} for p in results
                ],
            }
            write_json(staged / SCORES_JSON, record)
    return results


def _target(image: Path, base: Path, out_dir: Path) -> Path:
    return out_dir / image.relative_to(base).parent / f"{image.stem}_anomaly.png"


def _predict(
    run: Network,
    run_dir: Path,
    images: list[Path],
    base: Path,
    out_dir: Path,
    known: list[str],
    cls: str | None,
    quantile: float | None,
) -> tuple[list[Prediction], dict[str, Any]]:
    """Score and draw into `out_dir` (the staging folder of the real one); the results
    and the scoring protocol."""
    protocol = scoring_protocol(run, run_dir)
    scales = load_scales(run, run_dir, protocol)
    mean, std = run.encoder.mean_std
    samples = [Sample("new", "test", "unknown", path, None) for path in images]
    dataset = AnomalyDataset(samples, run.encoder.resolution, mean=mean, std=std)
    results = []
    with torch.no_grad():
        for index, path in enumerate(images):
            target = _target(path, base, out_dir)
            raw = score_batch(run, dataset[index]["image"][None], run.settings.infer)
            maps = smooth(raw, protocol["smoothing_sigma"])
            score = float(image_scores_from_maps(maps)[0])
            image_cls = image_class(path, known, cls)
            scale = scales[image_cls or ALL_CLASSES]
            relative = score / scale.high if scale.high > 0 else float("inf")
            threshold = None if quantile is None else scale.threshold(quantile)
            anomalous = None if threshold is None else bool(score > threshold)
            title = f"score {score:.4f} = {relative:.2f} x max normal ({scale.name})"
            _overlay(path, maps[0], scale, target, title)
            results.append(
                Prediction(
                    path, image_cls, scale.name, score, relative, threshold, anomalous, target
                )
            )
    return results, protocol

"""`cnc predict`: score new images with a trained run and draw heat-map overlays.

New images are scored as the run's test images were: its map size, and the smoothing
its metrics were computed with (metrics.json's protocol; the default before any
evaluation). The colour scale is fixed by the run's normal training images (its
calibration, kept in calibration.json and recomputed when that protocol changes): the
median training pixel is the bottom of the scale and the highest training image score
the top, so an overlay that saturates is hotter than anything the model saw as normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from cnc.data.dataset import AnomalyDataset, run_split
from cnc.data.layout import Sample
from cnc.devices import pick_device
from cnc.errors import AlreadyExistsError, BadFileError, UsageError
from cnc.evaluation.maps import image_scores_from_maps, smooth
from cnc.infer import load_run, score_batch
from cnc.io import atomic_path, read_json, write_json
from cnc.model.build import Network
from cnc.runs import CALIBRATION, METRICS_JSON
from cnc.settings import EvaluateSettings


@dataclass(frozen=True)
class Prediction:
    image: Path
    score: float
    relative: float  # score / highest normal training score; > 1: above every normal image
    overlay: Path


def _check_images(images: list[Path]) -> None:
    for path in images:
        try:
            with Image.open(path) as im:
                im.verify()
        except (OSError, UnidentifiedImageError):
            raise BadFileError(f"{path}: not a readable image") from None


def _overlay(image: Path, anomaly: np.ndarray, low: float, high: float, out: Path, title: str):
    with Image.open(image) as im:
        picture = np.asarray(im.convert("RGB").resize(anomaly.shape[::-1]))
    fig = Figure(figsize=(6, 3.2))
    left, right = fig.subplots(1, 2)
    left.imshow(picture)
    left.set_title(image.name, fontsize=8)
    right.imshow(picture)
    shown = right.imshow(anomaly, cmap="jet", vmin=low, vmax=high, alpha=0.5)
    right.set_title(title, fontsize=8)
    for ax in (left, right):
        ax.axis("off")
    fig.colorbar(shown, ax=right, fraction=0.046)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def scoring_protocol(run: Network, run_dir: Path) -> dict[str, Any]:
    """How the run's test images were scored: map size and smoothing."""
    metrics = Path(run_dir) / METRICS_JSON
    recorded = read_json(metrics).get("protocol", {}) if metrics.is_file() else {}
    sigma = recorded.get("smoothing_sigma", EvaluateSettings().sigma)
    return {**run.settings.infer.protocol(), **EvaluateSettings(sigma=sigma).protocol()}


def calibrate(run: Network, protocol: dict[str, Any]) -> dict[str, Any]:
    """Score statistics of the run's (normal) training images under `protocol`: the fixed
    colour scale of `cnc predict` and a reference for new images' scores."""
    encoder, infer = run.encoder, run.settings.infer
    dataset = run_split(run.settings.data, "train", encoder.resolution, encoder.mean_std)
    loader = torch.utils.data.DataLoader(dataset, batch_size=infer.batch_size)
    pixels, scores = [], []
    with torch.no_grad():
        for batch in loader:
            maps = smooth(score_batch(run, batch["image"], infer), protocol["smoothing_sigma"])
            pixels.append(np.median(maps.reshape(len(maps), -1), axis=1))
            scores.append(image_scores_from_maps(maps))
    image_scores = np.concatenate(scores)
    return {
        **protocol,
        "images": len(image_scores),
        "pixel_median": float(np.median(np.concatenate(pixels))),
        "image_score_p99": float(np.percentile(image_scores, 99)),
        "image_score_max": float(image_scores.max()),
    }


def predict(
    run_dir: Path, images: list[Path], out_dir: Path, device: str = "cpu", overwrite: bool = False
) -> list[Prediction]:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_images(images)
    targets = [out_dir / f"{path.stem}_anomaly.png" for path in images]
    if len(set(targets)) != len(targets):
        raise UsageError("two input images share a file name; predict them in separate calls")
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise AlreadyExistsError(f"{existing[0]}: exists; pass --overwrite or choose another --out")
    run = load_run(run_dir, pick_device(device))
    protocol = scoring_protocol(run, run_dir)
    cached = run_dir / CALIBRATION
    calibration = read_json(cached) if cached.is_file() else {}
    if any(calibration.get(k) != v for k, v in protocol.items()):  # none yet, or stale
        calibration = calibrate(run, protocol)
        write_json(cached, calibration)
    mean, std = run.encoder.mean_std
    samples = [Sample("new", "test", "unknown", path, None) for path in images]
    dataset = AnomalyDataset(samples, run.encoder.resolution, mean=mean, std=std)
    low, high = calibration["pixel_median"], calibration["image_score_max"]
    results = []
    with torch.no_grad():
        for index, (path, target) in enumerate(zip(images, targets, strict=True)):
            raw = score_batch(run, dataset[index]["image"][None], run.settings.infer)
            maps = smooth(raw, protocol["smoothing_sigma"])
            score = float(image_scores_from_maps(maps)[0])
            relative = score / high if high > 0 else float("inf")
            title = f"score {score:.3g} ({relative:.2f} x max normal training score)"
            _overlay(path, maps[0], low, max(high, low + 1e-6), target, title)
            results.append(Prediction(path, score, relative, target))
    return results

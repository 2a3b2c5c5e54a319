"""`cnc predict`: score new images with a trained run and draw heat-map overlays.

The colour scale is fixed by the run's normal training images (its calibration): the
median training pixel is the bottom of the scale and the highest training image score
the top, so an overlay that saturates is hotter than anything the model saw as normal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, UnidentifiedImageError

from cnc.data.dataset import AnomalyDataset
from cnc.data.layout import Sample
from cnc.errors import AlreadyExistsError, BadFileError, UsageError
from cnc.evaluation.maps import image_scores_from_maps
from cnc.infer import (
    calibrate,
    load_run,
    pick_device,
    read_calibration,
    score_batch,
)
from cnc.io import atomic_path, write_json
from cnc.runs import CALIBRATION


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
    calibration = read_calibration(run_dir)
    if calibration is None:  # computed once per run, on its training images
        calibration = calibrate(run, run.settings.infer)
        write_json(run_dir / CALIBRATION, calibration)
    # Scored as the calibration was, so the colour scale fits.
    infer = replace(
        run.settings.infer, map_size=calibration["map_size"], sigma=calibration["smoothing_sigma"]
    )
    mean, std = run.encoder.mean_std
    samples = [Sample("new", "test", "unknown", path, None) for path in images]
    dataset = AnomalyDataset(samples, run.encoder.resolution, mean=mean, std=std)
    low, high = calibration["pixel_median"], calibration["image_score_max"]
    results = []
    with torch.no_grad():
        for index, (path, target) in enumerate(zip(images, targets, strict=True)):
            maps = score_batch(run, dataset[index]["image"][None], infer)
            score = float(image_scores_from_maps(maps)[0])
            relative = score / high if high > 0 else float("inf")
            title = f"score {score:.3g} ({relative:.2f} x max normal training score)"
            _overlay(path, maps[0], low, max(high, low + 1e-6), target, title)
            results.append(Prediction(path, score, relative, target))
    return results

"""Inference: anomaly maps of every test image of a trained run, saved for evaluation.

Maps are computed with eq. (17) at the evaluation size of the run's inference settings
(by default the same for every backbone and input resolution, so runs are comparable),
smoothed with a Gaussian and reduced to an image score by their maximum. Everything
evaluation needs is written to the run's maps folder, so metrics and tables are
recomputed without the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import DataLoader
from tqdm import tqdm

from cnc.data.dataset import AnomalyDataset, run_split
from cnc.evaluation.maps import (
    ClassMaps,
    image_scores_from_maps,
    write_class_maps,
    write_protocol,
)
from cnc.io import atomic_dir, read_json
from cnc.model.backbone import FrozenCLIP
from cnc.model.build import build, encoder_fingerprint
from cnc.model.network import CNCNetwork
from cnc.runs import CALIBRATION, MAPS_DIR, TrainingError, load_final
from cnc.settings import InferSettings, RunSettings


@dataclass
class TrainedRun:
    settings: RunSettings
    encoder: FrozenCLIP
    model: CNCNetwork


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_run(run_dir: Path, device: str = "cpu") -> TrainedRun:
    """The encoder and trained network of a finished run, in eval mode."""
    state = load_final(run_dir)
    settings = state["settings"]
    encoder, model = build(settings, device)
    if encoder_fingerprint(encoder) != state["encoder_fingerprint"]:
        raise TrainingError(
            f"{run_dir}: the encoder weights differ from those the run was trained with "
            f"({settings.backbone.weights}); use the same weights file"
        )
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedRun(settings, encoder, model)


def smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each (H, W) map of a (N, H, W) stack."""
    if sigma <= 0:
        return maps
    return gaussian_filter(maps, sigma=(0, sigma, sigma))


def score_batch(run: TrainedRun, images: torch.Tensor, infer: InferSettings) -> np.ndarray:
    """Smoothed eq. (17) maps (N, S, S) of normalised images."""
    device = next(run.model.parameters()).device
    taps = run.encoder.encode_taps(images.to(device))
    maps = run.model.anomaly_maps(run.encoder, taps, infer.map_size)
    return smooth(maps.float().cpu().numpy(), infer.sigma)


def _split(run: TrainedRun, split: str, mask_size: int | None = None) -> AnomalyDataset:
    return run_split(
        run.settings.data, split, run.encoder.resolution, run.encoder.mean_std, mask_size
    )


def _loader(dataset: AnomalyDataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def calibrate(run: TrainedRun, infer: InferSettings, progress: bool = False) -> dict[str, Any]:
    """Score statistics of the (normal) training images: the fixed colour scale of
    `cnc predict` and a reference for new images' scores."""
    dataset = _split(run, "train")
    pixels, scores = [], []
    for batch in tqdm(_loader(dataset, infer.batch_size), "calibrating", disable=not progress):
        maps = score_batch(run, batch["image"], infer)
        pixels.append(np.median(maps.reshape(len(maps), -1), axis=1))
        scores.append(image_scores_from_maps(maps))
    image_scores = np.concatenate(scores)
    return {
        **infer.protocol(),
        "images": len(image_scores),
        "pixel_median": float(np.median(np.concatenate(pixels))),
        "image_score_p99": float(np.percentile(image_scores, 99)),
        "image_score_max": float(image_scores.max()),
    }


def infer_run(
    run_dir: Path,
    infer: InferSettings | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Write the maps of every test class and their protocol, with the run's own inference
    settings unless `infer` is given. The maps folder is replaced as a whole, never
    half-written."""
    run_dir = Path(run_dir)
    run = load_run(run_dir, pick_device(device))
    infer = infer or run.settings.infer
    dataset = _split(run, "test", mask_size=infer.map_size)
    if len(dataset) == 0:
        raise TrainingError(f"{run.settings.data.root}: no test images")
    collected: dict[str, dict[str, list]] = {}
    for batch in tqdm(_loader(dataset, infer.batch_size), "inference", disable=not progress):
        maps = score_batch(run, batch["image"], infer)
        for i, cls in enumerate(batch["cls"]):
            entry = collected.setdefault(cls, {"maps": [], "masks": [], "labels": [], "paths": []})
            entry["maps"].append(maps[i])
            entry["masks"].append(batch["mask"][i].numpy())
            entry["labels"].append(int(batch["label"][i]))
            entry["paths"].append(batch["path"][i])
    with atomic_dir(run_dir / MAPS_DIR, replace=True) as tmp:
        for cls, entry in collected.items():
            maps = np.stack(entry["maps"])
            write_class_maps(
                tmp,
                cls,
                ClassMaps(
                    maps=maps,
                    masks=np.stack(entry["masks"]),
                    labels=np.array(entry["labels"]),
                    image_scores=image_scores_from_maps(maps),
                    paths=np.array(entry["paths"]),
                ),
            )
        write_protocol(tmp, {**infer.protocol(), "classes": sorted(collected)})
    return {"classes": {c: len(e["labels"]) for c, e in collected.items()}, **infer.to_dict()}


def read_calibration(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / CALIBRATION
    return read_json(path) if path.is_file() else None

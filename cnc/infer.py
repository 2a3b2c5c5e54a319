"""Inference: anomaly maps of every test image of a trained run, saved for evaluation.

Maps are computed with eq. (17) at a fixed evaluation size (the same for every backbone
and input resolution, so runs are comparable), smoothed with a Gaussian and reduced to
an image score by their maximum. Everything evaluation needs is written to `maps/`, so
metrics and tables are recomputed without the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import DataLoader
from tqdm import tqdm

from cnc.data.dataset import AnomalyDataset, open_split
from cnc.io import atomic_dir, read_json
from cnc.maps import (
    MAPS_DIR,
    ClassMaps,
    image_scores_from_maps,
    write_class_maps,
    write_protocol,
)
from cnc.model.backbone import FrozenCLIP
from cnc.model.build import build, encoder_fingerprint
from cnc.model.cnc import CNC
from cnc.settings import CHECKPOINT, FINAL, InferConfig, TrainConfig
from cnc.train import TrainingError, load_checkpoint

CALIBRATION = "calibration.json"


@dataclass
class TrainedRun:
    config: TrainConfig
    encoder: FrozenCLIP
    model: CNC


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_run(run_dir: Path, device: str = "cpu") -> TrainedRun:
    """The encoder and trained model of a finished run, in eval mode."""
    path = Path(run_dir) / FINAL
    if not path.is_file() and (Path(run_dir) / CHECKPOINT).is_file():
        raise TrainingError(f"{run_dir}: training is unfinished; continue it with --resume")
    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    encoder, model = build(config.arch, device)
    if encoder_fingerprint(encoder) != state["encoder_fingerprint"]:
        raise TrainingError(
            f"{run_dir}: the encoder weights differ from those the run was trained with "
            f"({config.arch.weights}); use the same weights file"
        )
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedRun(config, encoder, model)


def smooth(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of each (H, W) map of a (N, H, W) stack."""
    if sigma <= 0:
        return maps
    return gaussian_filter(maps, sigma=(0, sigma, sigma))


def score_batch(run: TrainedRun, images: torch.Tensor, config: InferConfig) -> np.ndarray:
    """Smoothed eq. (17) maps (N, S, S) of normalised images."""
    device = next(run.model.parameters()).device
    taps = run.encoder.encode_taps(images.to(device))
    maps = run.model.anomaly_maps(run.encoder, taps, config.map_size)
    return smooth(maps.float().cpu().numpy(), config.sigma)


def _split(run: TrainedRun, split: str, **kwargs: Any) -> AnomalyDataset:
    """A split of the run's dataset as its encoder expects it (resolution, normalisation)."""
    mean, std = run.encoder.mean_std
    classes = list(run.config.classes) if run.config.classes else None
    return open_split(
        Path(run.config.data_root),
        split,
        run.encoder.resolution,
        classes,
        mean=mean,
        std=std,
        **kwargs,
    )


def _loader(dataset: AnomalyDataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def calibrate(run: TrainedRun, config: InferConfig, progress: bool = False) -> dict[str, Any]:
    """Score statistics of the (normal) training images: the fixed colour scale of
    `cnc predict` and a reference for new images' scores."""
    dataset = _split(run, "train")
    pixels, scores = [], []
    for batch in tqdm(_loader(dataset, config.batch_size), "calibrating", disable=not progress):
        maps = score_batch(run, batch["image"], config)
        pixels.append(np.median(maps.reshape(len(maps), -1), axis=1))
        scores.append(image_scores_from_maps(maps))
    image_scores = np.concatenate(scores)
    return {
        **config.protocol(),
        "images": len(image_scores),
        "pixel_median": float(np.median(np.concatenate(pixels))),
        "image_score_p99": float(np.percentile(image_scores, 99)),
        "image_score_max": float(image_scores.max()),
    }


def infer_run(
    run_dir: Path, config: InferConfig, device: str = "cpu", progress: bool = True
) -> dict[str, Any]:
    """Write `maps/<cls>.npz` for every test class and `maps/protocol.json`. The maps
    folder is replaced as a whole, never half-written."""
    run_dir = Path(run_dir)
    run = load_run(run_dir, pick_device(device))
    dataset = _split(run, "test", mask_size=config.map_size)
    if len(dataset) == 0:
        raise TrainingError(f"{run.config.data_root}: no test images")
    collected: dict[str, dict[str, list]] = {}
    for batch in tqdm(_loader(dataset, config.batch_size), "inference", disable=not progress):
        maps = score_batch(run, batch["image"], config)
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
        write_protocol(tmp, {**config.protocol(), "classes": sorted(collected)})
    return {"classes": {c: len(e["labels"]) for c, e in collected.items()}, **asdict(config)}


def read_calibration(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / CALIBRATION
    return read_json(path) if path.is_file() else None

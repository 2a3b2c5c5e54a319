"""`cnc bench train`: seconds per epoch with the feature cache against re-encoding.

Both variants train the same model from the same seed on the same images; the cache
variant pays one encoding pass up front (reported separately), the other loads and
encodes every batch of every epoch, which is what training without a cache costs.
"""

from __future__ import annotations

import math
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from cnc.data.dataset import run_split
from cnc.data.prepare import synthetic
from cnc.data.synthetic import CLASSES, SyntheticSpec
from cnc.model.build import build
from cnc.settings import BackboneSettings, DataSettings, RunSettings, TrainSettings
from cnc.train import FeatureCache, FeatureSource, Reencode, run_epoch

MVTEC_TRAIN_IMAGES = 3629


@dataclass(frozen=True)
class Timing:
    name: str
    setup_s: float  # encoding pass of the cache; 0 when re-encoding
    epoch_s: float  # mean over the timed epochs
    peak_gpu_mb: float | None

    def projected_s(self, epochs: int) -> float:
        return self.setup_s + epochs * self.epoch_s


def bench_set(folder: Path, images: int, image_size: int) -> Path:
    """A synthetic training set of about `images` images (test split kept minimal)."""
    per_class = math.ceil(images / len(CLASSES))
    spec = SyntheticSpec(image_size=image_size, train_per_class=per_class, test_per_class=3)
    synthetic(spec, folder)
    return folder


def _time_variant(
    name: str, settings: RunSettings, epochs: int, device: str, scratch: Path
) -> Timing:
    torch.manual_seed(settings.seed)
    encoder, model = build(settings, device)
    dataset = run_split(settings.data, "train", encoder.resolution, encoder.mean_std)
    t = settings.train
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, betas=t.betas)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    began = time.perf_counter()
    if name == "feature cache":
        features: FeatureSource = FeatureCache.build(
            encoder, dataset, device, "auto", scratch, progress=False
        )
    else:
        features = Reencode(encoder, dataset, device)
    setup = time.perf_counter() - began
    noise = torch.Generator(device=device).manual_seed(1)
    shuffle = torch.Generator().manual_seed(0)
    times = []
    for epoch in range(epochs):
        order = torch.randperm(len(dataset), generator=shuffle)
        began = time.perf_counter()
        run_epoch(model, encoder, features, optimizer, order, t.batch_size, epoch, noise)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    if isinstance(features, FeatureCache):
        features.close()
    return Timing(name, setup, sum(times) / len(times), peak)


def run(
    backbone: str,
    resolution: int,
    images: int,
    epochs: int,
    device: str,
    data_root: Path | None = None,
) -> tuple[list[Timing], int]:
    """Timings of both variants (the run settings' defaults otherwise), and the number of
    training images used."""
    with tempfile.TemporaryDirectory() as tmp:
        root = data_root or bench_set(Path(tmp) / "set", images, min(resolution, 256))
        settings = RunSettings(
            DataSettings("bench", str(root)),
            BackboneSettings(name=backbone, weights="random", resolution=resolution),
            train=TrainSettings(epochs=epochs),
        )
        n = len(run_split(settings.data, "train", resolution, ((0.0,) * 3, (1.0,) * 3)))
        timings = [
            _time_variant(name, settings, epochs, device, Path(tmp))
            for name in ("feature cache", "re-encode every step")
        ]
    return timings, n


def rows(timings: list[Timing], project: int) -> list[list[str]]:
    """Each variant's figures, the speed-up against the last one (re-encoding)."""
    slow = timings[-1].projected_s(project)
    return [
        [
            t.name,
            f"{t.setup_s:.2f}",
            f"{t.epoch_s:.3f}",
            f"{t.projected_s(project) / 3600:.2f} h",
            f"{slow / t.projected_s(project):.1f}x",
            "-" if t.peak_gpu_mb is None else f"{t.peak_gpu_mb:.0f}",
        ]
        for t in timings
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

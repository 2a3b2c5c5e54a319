"""`cnc bench train`: seconds per epoch of one training run, per precision and per place
of the feature cache, and what the paper's whole grid would take on this device.

Every variant trains the same model from the same seed on the same images: "setup" is
the encoding pass that fills the cache (none when re-encoding), then a few epochs are
timed. The projection of the paper's grid (43 runs at 250 epochs on MVTec AD's 3629
training images, 200 on VisA's 8659) divides each run's FLOPs (cnc.training.cost, counted on
the meta device from its settings) by the throughput measured here: the encoder's
(GFLOP/s of the encoding pass) for caching and inference, the training step's for the
epochs. It assumes time proportional to FLOPs at the measured rates: a projection, not a
measurement, and only as good as the benchmarked model is like the paper's (`--paper`).
"""

from __future__ import annotations

import math
import resource
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from cnc.data.dataset import make_loader, open_split, run_split
from cnc.data.prepare import synthetic
from cnc.data.registry import MVTEC_COUNTS, VISA_COUNTS
from cnc.data.synthetic import CLASSES, SyntheticSpec
from cnc.model import precision
from cnc.model.backbone import FrozenCLIP
from cnc.model.build import build
from cnc.pipeline import grid
from cnc.settings import BackboneSettings, DataSettings, RunSettings, TrainSettings
from cnc.training.cost import flops_per_image
from cnc.training.devices import loader_workers
from cnc.training.features import DTYPES as CACHE_DTYPES
from cnc.training.features import FeatureCache, FeatureSource, Reencode, cache_bytes
from cnc.training.loop import make_optimizer, run_epoch

IMAGES = {  # (train, test) images of the paper's datasets
    name: (sum(c[0] for c in counts.values()), sum(c[1] + c[2] for c in counts.values()))
    for name, counts in (("mvtec", MVTEC_COUNTS), ("visa", VISA_COUNTS))
}
MVTEC_TRAIN_IMAGES = IMAGES["mvtec"][0]


@dataclass(frozen=True)
class Timing:
    name: str
    setup_s: float  # encoding pass of the cache; 0 when re-encoding
    epoch_s: float  # mean over the timed epochs
    peak_gpu_mb: float | None

    def projected_s(self, epochs: int) -> float:
        return self.setup_s + epochs * self.epoch_s


def variants(device: str) -> list[tuple[str, str]]:
    """(precision, cache) pairs to time: every precision with the cache where `auto` puts
    it, the auto precision with the cache in host memory and without a cache."""
    cuda = device.startswith("cuda")
    auto = precision.resolve("auto", device)
    precisions = ("fp32", "tf32", "bf16", "fp16") if cuda else ("fp32", "bf16")
    cached = [(p, "gpu" if cuda else "memory") for p in precisions]
    return [*cached, *([(auto, "memory")] if cuda else []), (auto, "off")]


def bench_set(folder: Path, images: int, image_size: int) -> Path:
    """A synthetic training set of about `images` images (test split kept minimal)."""
    per_class = math.ceil(images / len(CLASSES))
    spec = SyntheticSpec(image_size=image_size, train_per_class=per_class, test_per_class=3)
    synthetic(spec, folder)
    return folder


def _time_variant(settings: RunSettings, epochs: int, device: str, scratch: Path) -> Timing:
    t = settings.train
    arithmetic = precision.resolve(t.precision, device)
    precision.configure(arithmetic)

    def amp():
        return precision.autocast(arithmetic, device)

    torch.manual_seed(settings.seed)
    encoder, model = build(settings, device)
    dataset = run_split(settings.data, "train", encoder.resolution, encoder.mean_std)
    optimizer = make_optimizer(model, t)
    scaler = precision.scaler(arithmetic, device)
    workers = loader_workers(t.workers, device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    began = time.perf_counter()
    if t.cache == "off":
        features: FeatureSource = Reencode(encoder, dataset, device, workers, amp)
    else:
        features = FeatureCache.build(encoder, dataset, device, t, scratch, workers, amp, False)
    if cuda:
        torch.cuda.synchronize()
    setup = time.perf_counter() - began
    noise = torch.Generator(device=device).manual_seed(1)
    shuffle = torch.Generator().manual_seed(0)
    times = []
    for epoch in range(epochs):
        order = torch.randperm(len(dataset), generator=shuffle)
        began = time.perf_counter()
        run_epoch(
            model, encoder, features, optimizer, order, t.batch_size, epoch, noise,
            amp=amp, scaler=scaler,
        )  # fmt: skip
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    if isinstance(features, FeatureCache):
        features.close()
    source = "re-encode every step" if t.cache == "off" else f"cache in {t.cache}"
    name = f"{arithmetic}, {source}"
    return Timing(name, setup, sum(times) / len(times), peak)


def run(
    backbone: str,
    resolution: int,
    images: int,
    epochs: int,
    device: str,
    data_root: Path | None = None,
) -> tuple[list[Timing], int, RunSettings]:
    """Timings of every variant (the run settings' defaults otherwise), the number of
    training images used and the settings timed."""
    with tempfile.TemporaryDirectory() as tmp:
        root = data_root or bench_set(Path(tmp) / "set", images, min(resolution, 256))
        settings = RunSettings(
            DataSettings("bench", str(root)),
            BackboneSettings(name=backbone, weights="random", resolution=resolution),
            train=TrainSettings(epochs=epochs),
        )
        n = len(run_split(settings.data, "train", resolution, ((0.0,) * 3, (1.0,) * 3)))
        timings = []
        for arithmetic, cache in variants(device):
            chosen = replace(settings.train, precision=arithmetic, cache=cache)
            variant = replace(settings, train=chosen)
            timings.append(_time_variant(variant, epochs, device, Path(tmp)))
    return timings, n, settings


def projection_variant(timings: list[Timing], device: str) -> Timing:
    """The variant a plain run would use: the auto precision, the cache where auto puts it
    when it fits (GPU memory on a GPU, host memory on a CPU)."""
    return (
        timings[0]
        if not device.startswith("cuda")
        else timings[variants(device).index((precision.resolve("auto", device), "gpu"))]
    )


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


def paper_grid(params: dict[str, Any], target: str = "all") -> list[RunSettings]:
    """Every run's settings of the params' grid at the paper scale: of target `all`, or
    those another target (`choices`: Table S1) adds to it."""
    params = {**params, "scale": "paper", "data": {**params["data"], "prepare": ["mvtec", "visa"]}}
    points = grid.grid_points(params, "all") if target == "all" else grid.own_points(params, target)
    return [grid.run_settings(params, p) for p in points.values()]


def grid_hours(
    timing: Timing, timed: RunSettings, images: int, params: dict[str, Any], target: str = "all"
) -> dict[str, Any]:
    """The paper grid's projected hours (of `target`'s own runs) at the throughput of
    `timing` (see the module)."""
    measured = flops_per_image(timed)
    encoder_rate = images * measured["gflops_encoder"] / max(timing.setup_s, 1e-9)
    step_rate = images * measured["gflops_train_step"] / max(timing.epoch_s, 1e-9)
    seconds, runs, flops = 0.0, 0, {}
    for settings in paper_grid(params, target):
        key = settings.to_json()
        if key not in flops:  # runs of other seeds share their settings' FLOPs
            flops[key] = flops_per_image(settings)
        f = flops[key]
        train_images, test_images = IMAGES[settings.data.dataset]
        seconds += (train_images + test_images) * f["gflops_encoder"] / encoder_rate
        seconds += settings.train.epochs * train_images * f["gflops_train_step"] / step_rate
        seconds += test_images * (f["gflops_inference"] - f["gflops_encoder"]) / encoder_rate
        runs += 1
    return {"runs": runs, "hours": seconds / 3600, "variant": timing.name}


def cache_sizes(params: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, float]]:
    """GB of the feature cache per (dataset, backbone, resolution) of the paper grid, per
    cache dtype (cnc.training.features.cache_bytes, the encoder built on the meta device)."""
    sizes = {}
    for settings in paper_grid(params):
        b = settings.backbone
        key = (settings.data.dataset, b.name, b.resolution)
        if key not in sizes:
            encoder = FrozenCLIP(b.name, "random", b.resolution, b.taps, device="meta")
            images = IMAGES[settings.data.dataset][0]
            sizes[key] = {d: cache_bytes(encoder, images, d) / 1e9 for d in CACHE_DTYPES}
    return sizes


def decode_rates(
    images: int, size: int, resolution: int, workers: list[int]
) -> list[tuple[int, float]]:
    """Images per second the training loader decodes and resizes from `size`-px PNGs (as
    MVTec AD's 700-1024 px images) to `resolution`, for each number of workers."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "decode" / "train" / "good"
        folder.mkdir(parents=True)
        for i in range(images):  # smooth noise: compresses like a photograph, not like static
            small = rng.integers(0, 255, (size // 16, size // 16, 3), dtype=np.uint8)
            picture = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
            picture.save(folder / f"{i:04d}.png")
        dataset = open_split(Path(tmp), "train", resolution)
        rates = []
        for count in workers:
            loader = make_loader(dataset, count, "cpu", batch_size=8)
            began = time.perf_counter()
            for _ in loader:
                pass
            rates.append((count, images / (time.perf_counter() - began)))
    return rates


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

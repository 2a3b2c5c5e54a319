"""What a run costs, next to what it scores (Table 5): parameters, FLOPs per image, time
per epoch, inference throughput, peak memory and the device, saved as `cost.json`.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` (matrix products and
convolutions, forward and backward) on one batch of `train.batch_size` images, on the
meta device: from the settings alone, without weights, memory or compute, so the same
count serves a run's cost.json and the projection of the paper's grid (`cnc bench
train`):
- `gflops_train_step`: the trainable network's forward and backward pass per image, on
  cached features (the frozen encoder is not run during a step when features are cached);
- `gflops_encoder`: the frozen encoder's forward pass per image (once per training image
  with the cache, every step without it);
- `gflops_inference`: the encoder, the network and eq. 17's map, per image.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnc.io import write_json
from cnc.model.backbone import FrozenCLIP
from cnc.model.build import Network
from cnc.model.network import CNCNetwork
from cnc.provenance import cpu_name
from cnc.runs import COST
from cnc.settings import RunSettings

GIGA = 1e9


def device_name(device: str) -> str:
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU: {cpu_name()}"


def peak_memory_gb(device: str) -> float:
    """Peak GPU memory allocated by this process, or its peak resident memory on a CPU."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(torch.device(device)) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _gflops(run: Callable[[], None]) -> float:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / GIGA


def flops_per_image(settings: RunSettings) -> dict[str, float]:
    """GFLOPs per image of a training step, of the encoder and of inference."""
    b = settings.backbone
    encoder = FrozenCLIP(b.name, "random", b.resolution, b.taps, device="meta")
    with torch.device("meta"):
        model = CNCNetwork(encoder, settings.model)
    n = settings.train.batch_size
    images = torch.empty(n, 3, b.resolution, b.resolution, device="meta")
    taps = encoder.encode_taps(images)

    def step() -> None:  # on cached features, with L_c2 in the loss (epoch theta)
        model(encoder, taps, settings.model.theta).terms["total"].backward()

    def infer() -> None:
        model.eval()
        model.anomaly_maps(encoder, encoder.encode_taps(images), settings.infer.map_size)

    return {
        "gflops_train_step": _gflops(step) / n,
        "gflops_encoder": _gflops(lambda: encoder.encode_taps(images)) / n,
        "gflops_inference": _gflops(infer) / n,
    }


def measure(
    network: Network,
    history: list[dict[str, Any]],
    inference: dict[str, Any],
    device: str,
    precision: str,
) -> dict[str, Any]:
    """The cost of a run just trained and inferred (see the module's text)."""
    model, encoder = network.model, network.encoder
    seconds = sorted(row["seconds"] for row in history)
    return {
        "params_trainable_m": _count(model) / 1e6,
        "params_total_m": (_count(model) + _count(encoder)) / 1e6,
        **flops_per_image(network.settings),
        "seconds_per_epoch": seconds[len(seconds) // 2],  # the median epoch
        "inference_images_per_s": inference["images"] / max(inference["seconds"], 1e-9),
        "peak_memory_gb": peak_memory_gb(device),
        "device": device_name(device),
        "precision": precision,
    }


def write_cost(run_dir: Path, cost: dict[str, Any]) -> None:
    write_json(Path(run_dir) / COST, cost)

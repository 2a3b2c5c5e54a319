"""Inference: anomaly maps of every test image of a trained run, saved for evaluation.

Maps are computed with eq. (17) at the size of the run's inference settings (the input
resolution by default, as the paper's eq. 17 says) and saved unsmoothed: everything
evaluation needs is in the run's maps folder, so metrics and tables are recomputed
(and re-smoothed) without the model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cnc.data.dataset import AnomalyDataset, make_loader, run_split
from cnc.evaluation.maps import ClassMaps, MapsError, write_class_maps, write_protocol
from cnc.io import atomic_dir, file_stamp, remove_stale_temporaries
from cnc.model import precision
from cnc.model.build import Network, build, encoder_fingerprint
from cnc.runs import FINAL, MAPS_DIR, TrainingError, load_final
from cnc.settings import InferSettings
from cnc.training.devices import loader_workers, pick_device


def load_run(run_dir: Path, device: str = "cpu") -> Network:
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
    return Network(settings, encoder, model.eval())


@contextmanager
def named_run(run_dir: Path) -> Iterator[None]:
    try:
        yield
    except MapsError as exc:
        raise TrainingError(f"{run_dir}: {exc}") from None


def score_batch(run: Network, images: torch.Tensor, infer: InferSettings) -> np.ndarray:
    """Eq. (17) maps (N, S, S) of normalised images, not smoothed, in the run's precision."""
    device = str(next(run.model.parameters()).device)
    with precision.autocast(precision.resolve(run.settings.train.precision, device), device):
        taps = run.encoder.encode_taps(images.to(device, non_blocking=True))
        maps = run.model.anomaly_maps(run.encoder, taps, infer.map_size)
    return maps.float().cpu().numpy()


def _split(run: Network, split: str, mask_size: int | None = None) -> AnomalyDataset:
    return run_split(
        run.settings.data, split, run.encoder.resolution, run.encoder.mean_std, mask_size
    )


def infer_run(
    run_dir: Path,
    infer: InferSettings | None = None,
    device: str = "cpu",
    progress: bool = True,
    network: Network | None = None,
) -> dict[str, Any]:
    """Write the maps of every test class and their protocol, with the run's own inference
    settings unless `infer` is given, and its finished model unless `network` is the one
    just trained. The maps folder is replaced as a whole, never half-written."""
    run_dir = Path(run_dir)
    run = network or load_run(run_dir, pick_device(device))
    infer = infer or run.settings.infer
    dataset = _split(run, "test", mask_size=infer.map_size)
    if len(dataset) == 0:
        raise TrainingError(f"{run.settings.data.root}: no test images")
    collected: dict[str, dict[str, list]] = {}
    began = time.perf_counter()
    device = str(next(run.model.parameters()).device)
    workers = loader_workers(run.settings.train.workers, device)
    loader = make_loader(dataset, workers, device, batch_size=infer.batch_size)
    for batch in tqdm(loader, "inference", disable=not progress):
        maps = score_batch(run, batch["image"], infer)
        for i, cls in enumerate(batch["cls"]):
            entry = collected.setdefault(
                cls, {"maps": [], "masks": [], "labels": [], "paths": [], "defects": []}
            )
            entry["maps"].append(maps[i])
            entry["masks"].append(batch["mask"][i].numpy())
            entry["labels"].append(int(batch["label"][i]))
            entry["paths"].append(batch["path"][i])
            entry["defects"].append(batch["defect"][i])
    seconds = time.perf_counter() - began  # the maps, before the disk
    remove_stale_temporaries(run_dir)
    # One commit: the folder appears whole (protocol.json inside it, written last) or the
    # earlier maps stay, non-finite maps included (write_class_maps refuses them).
    with named_run(run_dir), atomic_dir(run_dir / MAPS_DIR, replace=True) as tmp:
        digests = {}
        for cls, entry in collected.items():
            digests[cls] = write_class_maps(
                tmp,
                cls,
                ClassMaps(
                    maps=np.stack(entry["maps"]),
                    masks=np.stack(entry["masks"]),
                    labels=np.array(entry["labels"]),
                    paths=np.array(entry["paths"]),
                    defects=np.array(entry["defects"]),
                ),
            )
        protocol = {**infer.protocol(), "classes": sorted(collected)}
        model = file_stamp(run_dir / FINAL)  # the file these maps came from (cnc.runs)
        write_protocol(tmp, {**protocol, "maps": dict(sorted(digests.items())), "model": model})
    counts = {c: len(e["labels"]) for c, e in collected.items()}
    return {"classes": counts, "images": sum(counts.values()), "seconds": seconds}

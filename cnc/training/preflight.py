"""What a training job checks before it loads weights or writes anything: the data, the
encoder weights, and the disk. Each check is cheap (folder listings, a cache lookup, one
connection attempt, a build on the meta device); a failure names what to do, and the
run folder is left as it was (not even created).

The data check decodes every image once; it is remembered by the files' sizes and
times, so a rerun on unchanged data costs a folder listing. The feature cache checks its
own disk space when it is placed (cnc.training.features): whether it goes to GPU, host memory or
disk depends on what is free at that moment.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnc.data.manifest import checked
from cnc.data.registry import REMOTE, REPLICAS
from cnc.data.synthetic import SETS
from cnc.io import DiskFullError, free_bytes
from cnc.model.backbone import FrozenCLIP, resolve_weights
from cnc.model.network import CNCNetwork
from cnc.runs import TrainingError
from cnc.settings import DataSettings, RunSettings

MARGIN = 64 * 2**20  # logs, JSON files, figures
PROBLEMS_SHOWN = 10


def data_command(data: DataSettings) -> str:
    """The command that prepares `data.root` for its dataset."""
    if data.dataset in REMOTE:
        spec = REMOTE[data.dataset]
        raw = " --raw <the extracted folder>" if spec.url is None and spec.convert else ""
        return f"cnc data fetch {data.dataset} --root {data.root}{raw}"
    if data.dataset in REPLICAS:
        return f"cnc data prepare {data.dataset} (params.yaml's data.{data.dataset})"
    if data.dataset in SETS:
        classes = ",".join(data.classes or SETS[data.dataset])
        return f"cnc data synthetic {data.root} --classes {classes}"
    return f"arrange the images under {data.root} in the MVTec layout (README: Data)"


def check_data(data: DataSettings) -> int:
    """The number of test images, after the checks of `cnc data check` (every image and
    mask decodes, masks match their images, every class has training images and normal
    and anomalous test images), remembered for unchanged files (cnc.data.check.checked)."""
    root = Path(data.root)
    if not root.is_dir():
        raise TrainingError(
            f"{root}: dataset root not found; prepare it with: {data_command(data)}"
        )
    report = checked(root, list(data.classes) if data.classes else None)
    if not report.ok:
        shown = "\n  ".join(report.problems[:PROBLEMS_SHOWN])
        more = len(report.problems) - PROBLEMS_SHOWN
        raise TrainingError(
            f"{root}: the data has {len(report.problems)} problem(s); nothing was trained:\n  "
            f"{shown}"
            + (f"\n  ... and {more} more" if more > 0 else "")
            + f"\nFix them (`cnc data check {root}` lists them all), or prepare the data "
            f"again with: {data_command(data)}"
        )
    return sum(c.test_good + c.test_anomalous for c in report.classes.values())


def disk_need(settings: RunSettings, test_images: int) -> int:
    """Bytes the run folder will need besides the feature cache: the resumable checkpoint
    (weights and Adam's two moments), the final model and the maps (float16 + mask)."""
    b = settings.backbone
    encoder = FrozenCLIP(b.name, "random", b.resolution, b.taps, device="meta")
    with torch.device("meta"):
        trainable = sum(p.numel() for p in CNCNetwork(encoder, settings.model).parameters())
    maps = test_images * settings.infer.map_size**2 * 3
    return 4 * trainable * 4 + maps + MARGIN


def check_disk(run_dir: Path, need: int) -> None:
    free = free_bytes(run_dir)
    if free < need:
        raise DiskFullError(
            f"{run_dir}: the run needs about {need / 2**30:.2f} GiB and {free / 2**30:.2f} GiB "
            "are free there; free space or choose a run folder on a larger disk"
        )


def preflight(settings: RunSettings, run_dir: Path, maps: bool = True) -> None:
    """Data, weights and disk, in that order (cheapest first), before the job starts."""
    test_images = check_data(settings.data)
    resolve_weights(settings.backbone.name, settings.backbone.weights)
    check_disk(Path(run_dir), disk_need(settings, test_images if maps else 0))

"""A run folder: the name of every file in it, and the checkpoints train, infer and
predict share. Torch is imported only to read or write a checkpoint, so the workflow and
the reports, which need the names alone, load fast.

    <run>/config.json          the run's settings (cnc.settings.RunSettings)
    <run>/checkpoint.pt        resumable state while training runs
    <run>/model.pt             the finished run: weights, settings, history
    <run>/train_log.csv        every loss term per epoch
    <run>/maps/                test maps per class and protocol.json (cnc.evaluation.maps)
    <run>/cost.json            what the run cost to train and infer (cnc.cost)
    <run>/provenance.json      code, packages, device, data and weights of the training
    <run>/metrics.json, .csv   the five metrics per class (cnc.evaluation.evaluate)
    <run>/bootstrap.npz        their bootstrap replicates (cnc.evaluation.replicates)
    <run>/heatmaps/<class>.png
    <run>/calibration.json     score statistics of the training images (cnc predict)
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cnc.errors import MissingFileError, UserError
from cnc.io import atomic_path, read_json, write_json
from cnc.settings import RunSettings

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"
TRAIN_LOG = "train_log.csv"
MAPS_DIR = "maps"
PROTOCOL = "protocol.json"  # inside maps/
PROVENANCE = "provenance.json"  # where the trained run came from (cnc.provenance)
COST = "cost.json"  # parameters, FLOPs, time, memory and device of the run (Table 5)
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
BOOTSTRAP = "bootstrap.npz"
HEATMAPS_DIR = "heatmaps"
CALIBRATION = "calibration.json"
REPORTED = (METRICS_JSON, BOOTSTRAP, COST, TRAIN_LOG)  # what the reports read of a run
FEATURE_CACHE_PREFIX = ".feature-cache-"  # memory-mapped features while training runs
LOCK = ".lock"  # held by the process that trains or infers the run
CHECKPOINT_FORMAT = 2  # 2: settings in RunSettings form


class TrainingError(UserError):
    """A run cannot train, continue or be loaded; the message says why and what to do."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process: a second process on the same run stops with
    a message naming the first (an exclusive `flock`, released at exit, a crash
    included)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise TrainingError(
                f"{run_dir}: {holder} is working on this run; wait for it to end, or stop it"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_settings(run_dir: Path, settings: RunSettings) -> None:
    write_json(Path(run_dir) / CONFIG, settings.to_dict())


def read_settings(run_dir: Path) -> RunSettings:
    return RunSettings.from_dict(read_json(Path(run_dir) / CONFIG), str(Path(run_dir) / CONFIG))


def dataset_of(run_dir: Path) -> str | None:
    """The dataset a run was trained on, read without validating its settings."""
    path = Path(run_dir) / CONFIG
    return read_json(path).get("data", {}).get("dataset") if path.is_file() else None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint or final model, on the CPU; its settings as RunSettings."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no checkpoint; train the run first (`cnc train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for a damaged file
        raise TrainingError(f"{path}: cannot read the checkpoint ({exc})") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(
            f"{path}: written by an older version of this benchmark; train the run again "
            "with --force"
        )
    state["settings"] = RunSettings.from_dict(state["settings"], str(path))
    return state


def load_final(run_dir: Path) -> dict[str, Any]:
    """The finished run's state; a clear error while it is still training."""
    run_dir = Path(run_dir)
    if not (run_dir / FINAL).is_file() and (run_dir / CHECKPOINT).is_file():
        raise TrainingError(f"{run_dir}: training is unfinished; continue it with --resume")
    return load_checkpoint(run_dir / FINAL)

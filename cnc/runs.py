"""A run folder: the name of every file in it, the lock that keeps its readers and
writers apart, the checkpoints train, infer and predict share, and the check that a
run's metrics belong with the files they were computed from. Torch is imported only to
read or write a checkpoint, so the workflow and the reports, which need the names alone,
load fast.

    <run>/config.json          the run's settings (cnc.settings.RunSettings)
    <run>/checkpoint.pt        resumable state while training runs
    <run>/model.pt             the finished run: weights, settings, history, their digest
    <run>/train_log.csv        every loss term per epoch
    <run>/maps/                test maps per class and protocol.json (cnc.evaluation.maps)
    <run>/cost.json            what the run cost to train and infer (cnc.training.cost)
    <run>/provenance.json      code, packages, device, data and weights of the training
    <run>/metrics.json, .csv   the five metrics per class (cnc.evaluation.evaluate)
    <run>/bootstrap.npz        their bootstrap replicates (cnc.evaluation.replicates)
    <run>/heatmaps/<class>.png
    <run>/calibration.json     score statistics of the training images (cnc predict)

What a result was computed from travels with it: model.pt holds a digest of its own
content; maps/protocol.json the content digest of every maps file and the model file's
stamp; metrics.json (written last by the evaluation) the digest of the protocol.json it
read and of the files written with it. `checked_metrics` follows that chain.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from cnc.errors import MissingFileError, UserError
from cnc.io import atomic_path, read_json, same_file, sha256_file, write_json
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
# Derived from the trained model: removed when a new model starts training, so that no
# file of the old model is ever read beside the new one.
# metrics.json first: a kill while removing leaves no result that looks complete.
DERIVED = (METRICS_JSON, METRICS_CSV, BOOTSTRAP, HEATMAPS_DIR, MAPS_DIR, COST, PROVENANCE,
           CALIBRATION)  # fmt: skip
EVALUATION_OUTPUTS = (BOOTSTRAP, METRICS_CSV)  # committed with metrics.json, digests in it
FEATURE_CACHE_PREFIX = ".feature-cache-"  # memory-mapped features while training runs
LOCK = ".lock"
CHECKPOINT_FORMAT = 3  # 3: a digest of the content, checked on load; plain data only


class TrainingError(UserError):
    """A run cannot train, continue or be loaded; the message says why and what to do."""


class RunBusyError(UserError):
    """Another process writes (or reads) the run; the message names it."""


class StaleResultError(UserError):
    """A run's saved result does not belong with the files it was computed from."""


# ----------------------------------------------------------------------------- the lock

_held: dict[str, tuple[bool, IO[str]]] = {}  # lock file -> (exclusive, handle), this process


def _holders(path: Path) -> str:
    """Who holds the lock on `path`: the processes the kernel lists (/proc/locks, Linux),
    each with what it recorded in the file (what it does, since when)."""
    try:
        inode = os.stat(path).st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        lines, inode = [], None
    pids = []
    for line in lines:
        fields = line.replace("->", "").split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
            pids.append(fields[4])
    recorded = path.read_text().splitlines() if path.is_file() else []
    named = []
    for pid in dict.fromkeys(pids):
        lines = [line for line in recorded if line.startswith(f"pid {pid} ")]
        if lines:
            named.append(lines[-1])
            continue
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            command = ""
        command = " ".join(command.split())[:120]
        named.append(f"pid {pid}" + (f" ({command})" if command else ""))
    return "; ".join(named) or (recorded[-1] if recorded else "another process")


@contextmanager
def run_lock(run_dir: Path, shared: bool = False, purpose: str = "") -> Iterator[None]:
    """Hold the run folder: exclusively for a step that writes it (train, infer, evaluate),
    shared for one that reads it (predict, report, compare). A process that cannot have
    the lock stops at once with a message naming the holder (an `flock`, released at
    exit, a crash included). Taking a lock this process already holds is a no-op."""
    run_dir = Path(run_dir)
    if shared and not run_dir.is_dir():
        yield  # nothing to read: the reader's own error says so
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = (run_dir / LOCK).resolve()
    held = _held.get(str(path))
    if held is not None:
        if held[0] or shared:
            yield
            return
        raise RunBusyError(f"{run_dir}: this process reads the run and cannot also write it")
    try:
        handle = open(path, "a+")  # noqa: SIM115 (closed by the `with` below)
    except PermissionError:
        if not shared:
            raise RunBusyError(
                f"{run_dir}: not writable by this user; copy the run folder to write it"
            ) from None
        if not path.is_file():  # a read-only run nobody can write: nothing to hold
            yield
            return
        handle = open(path)  # noqa: SIM115  a read-only folder: hold it without a record
    with handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            doing = "reading" if shared else "writing"
            raise RunBusyError(
                f"{run_dir}: cannot start {purpose or doing} while {_holders(path)} works on "
                "this run; wait for it to end, or stop it"
            ) from None
        if not shared:  # a writer is alone: the file names it only
            handle.seek(0)
            handle.truncate()
        if handle.writable():  # readers append (one short write each), a writer rewrites
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            what = f" ({purpose})" if purpose else ""
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}{what} since {started}\n")
            handle.flush()
        _held[str(path)] = (not shared, handle)
        try:
            yield
        finally:
            del _held[str(path)]
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def reading_runs(run_dirs: list[Path], purpose: str) -> Iterator[None]:
    """Shared locks on every run a reader reads, taken before it reads the first."""
    with ExitStack() as stack:
        for run_dir in dict.fromkeys(Path(d) for d in run_dirs):
            stack.enter_context(run_lock(run_dir, shared=True, purpose=purpose))
        yield


# ----------------------------------------------------------------------------- settings


def write_settings(run_dir: Path, settings: RunSettings) -> None:
    write_json(Path(run_dir) / CONFIG, settings.to_dict())


def read_settings(run_dir: Path) -> RunSettings:
    return RunSettings.from_dict(read_json(Path(run_dir) / CONFIG), str(Path(run_dir) / CONFIG))


def dataset_of(run_dir: Path) -> str | None:
    """The dataset a run was trained on, read without validating its settings."""
    path = Path(run_dir) / CONFIG
    return read_json(path).get("data", {}).get("dataset") if path.is_file() else None


# ----------------------------------------------------------------------------- checkpoints


def state_digest(state: Any) -> str:
    """A sha256 of a checkpoint's content: every tensor's type, shape and bytes and every
    plain value, in a fixed order."""
    import torch

    digest = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"T{tensor.dtype}{tuple(value.shape)}:".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(b"{")
            for key in sorted(value, key=repr):
                digest.update(repr(key).encode() + b":")
                walk(value[key])
            digest.update(b"}")
        elif isinstance(value, list | tuple):
            digest.update(b"[")
            for item in value:
                walk(item)
            digest.update(b"]")
        else:
            digest.update(repr(value).encode() + b";")

    walk(state)
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (plain data and tensors only) with the digest of its content."""
    import torch

    body = {k: v for k, v in state.items() if k not in ("format", "digest")}
    body["format"] = CHECKPOINT_FORMAT
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a full disk is an OSError here
        torch.save({**body, "digest": state_digest(body)}, fh)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint or final model, on the CPU, its digest checked; its settings as
    RunSettings. Only tensors and plain data are read: a file that holds anything else
    (which unpickling would run as code) is refused."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no checkpoint; train the run first (`cnc train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise TrainingError(
            f"{path}: holds objects other than tensors and plain data, which loading would "
            f"run as code; refused ({first}). Use a checkpoint this benchmark wrote, or "
            "train the run again with --force"
        ) from None
    except Exception as exc:  # torch raises several types for a damaged file
        raise TrainingError(
            f"{path}: cannot read the checkpoint ({exc}); it is damaged: train the run again "
            "with --force, or restore the file"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(
            f"{path}: written by an older version of this benchmark; train the run again "
            "with --force"
        )
    stored = state.pop("digest", None)
    if stored != state_digest(state):
        raise TrainingError(
            f"{path}: its content does not match the digest stored with it (the file is "
            "damaged or was altered); train the run again with --force, or restore the file"
        )
    state["settings"] = RunSettings.from_dict(state["settings"], str(path))
    return state


def load_final(run_dir: Path) -> dict[str, Any]:
    """The finished run's state; a clear error while it is still training."""
    run_dir = Path(run_dir)
    if not (run_dir / FINAL).is_file() and (run_dir / CHECKPOINT).is_file():
        raise TrainingError(f"{run_dir}: training is unfinished; continue it with --resume")
    return load_checkpoint(run_dir / FINAL)


# ----------------------------------------------------------------------------- results


def checked_metrics(run_dir: Path, protocol: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's metrics.json, after checking that it belongs with what is beside it: the
    files written with it (digests in it), the maps it was computed from (when the maps
    are there: a shared result may come without them) and the model those maps came from
    (when it is there). With `protocol`, the evaluation settings it must have been
    computed under. Any mismatch names the command that refreshes the result."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_JSON
    evaluate = f"cnc evaluate {run_dir}"
    if not path.is_file():
        raise StaleResultError(
            f"{path}: missing; run the workflow (snakemake / dvc repro) or `{evaluate}`"
        )
    metrics = read_json(path)
    files = metrics.get("files")
    if not isinstance(files, dict):
        raise StaleResultError(f"{path}: written by an older version; run `{evaluate}` again")
    for name, digest in files.get("outputs", {}).items():
        output = run_dir / name
        if not output.is_file() or sha256_file(output) != digest:
            raise StaleResultError(
                f"{output}: does not belong with {METRICS_JSON} (an evaluation was interrupted, "
                f"or the file changed); run `{evaluate}`"
            )
    maps = run_dir / MAPS_DIR / PROTOCOL
    if maps.is_file():
        if sha256_file(maps) != files.get("maps"):
            raise StaleResultError(
                f"{run_dir / MAPS_DIR}: the maps changed since {path} was computed from them; "
                f"run `{evaluate}`"
            )
        model = read_json(maps).get("model")
        if (run_dir / FINAL).is_file() and not (model and same_file(run_dir / FINAL, model)):
            why = "the model changed since its maps were written" if model else (
                "its maps do not say which model they came from (an older version)")  # fmt: skip
            raise StaleResultError(
                f"{run_dir / FINAL}: {why}; run `cnc infer {run_dir}`, then `{evaluate}`"
            )
    if protocol is not None:
        differ = {k: (metrics["protocol"].get(k), v) for k, v in protocol.items()
                  if metrics["protocol"].get(k) != v}  # fmt: skip
        if differ:
            shown = ", ".join(f"{k} {a} (expected {b})" for k, (a, b) in differ.items())
            raise StaleResultError(
                f"{path}: evaluated under another protocol: {shown}; run `{evaluate} --params "
                "params.yaml` to score it as params.yaml says"
            )
    return metrics


def remove_derived(run_dir: Path) -> None:
    """Remove everything computed from a run's model (DERIVED): a new model is starting."""
    for name in DERIVED:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

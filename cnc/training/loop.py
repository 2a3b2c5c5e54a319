"""Training one grid point: all classes jointly (multi-class), frozen encoder, Adam.

The encoder's tapped features come from a cache (cnc.training.features); the arithmetic follows
`train.precision` (cnc.model.precision). Runs are seeded and resumable: a checkpoint holds the
weights, the optimiser, the loss scaler and every random generator, so `resume` ends at
the same weights as an uninterrupted run.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cnc import code, provenance
from cnc.data.dataset import run_split
from cnc.errors import AlreadyExistsError
from cnc.io import atomic_path, remove_stale_temporaries
from cnc.model import precision
from cnc.model.backbone import FrozenCLIP
from cnc.model.build import Network, build, encoder_fingerprint
from cnc.model.network import CNCNetwork
from cnc.runs import (
    CHECKPOINT,
    FEATURE_CACHE_PREFIX,
    FINAL,
    MAPS_DIR,
    TRAIN_LOG,
    TrainingError,
    load_checkpoint,
    remove_derived,
    save_checkpoint,
    write_settings,
)
from cnc.settings import EXECUTION_ONLY, RESUMABLE_CHANGES, RunSettings, TrainSettings
from cnc.training.devices import loader_workers
from cnc.training.diagnostics import diagnose, diagnostic_batch, reference_text
from cnc.training.features import FeatureCache, FeatureSource, Reencode

# ----------------------------------------------------------------------------- training


def _rng_state(shuffle: torch.Generator, noise: torch.Generator) -> dict[str, Any]:
    state = {
        "shuffle": shuffle.get_state(),
        "noise": noise.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], shuffle: torch.Generator, noise: torch.Generator):
    shuffle.set_state(state["shuffle"])
    noise.set_state(state["noise"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_epoch(
    model: CNCNetwork,
    encoder: FrozenCLIP,
    features: FeatureSource,
    optimizer: torch.optim.Optimizer,
    order: torch.Tensor,
    batch_size: int,
    epoch: int,
    noise: torch.Generator,
    progress: bool = False,
    amp: Callable[[], AbstractContextManager] = nullcontext,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One pass over `order`; returns the image-weighted mean of each loss term."""
    model.train()
    scaler = scaler or torch.amp.GradScaler(enabled=False)
    sums: dict[str, float] = {}
    sizes = [len(b) for b in order.split(batch_size)]
    batches = zip(sizes, features.epoch(order, batch_size), strict=True)
    bar = tqdm(batches, desc=f"epoch {epoch + 1}", total=len(sizes), disable=not progress,
               leave=False)  # fmt: skip
    for size, taps in bar:
        with amp():
            out = model(encoder, taps, epoch, noise)
        for name, value in out.terms.items():
            if not torch.isfinite(value):
                raise TrainingError(
                    f"epoch {epoch + 1}: loss term {name} is {float(value)}; lower the "
                    "learning rate or check the data"
                )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.terms["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
        for name, value in out.terms.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * size
        shown = {k: f"{float(v.detach()):.3g}" for k, v in out.terms.items()}
        bar.set_postfix(shown, refresh=False)
    return {name: total / len(order) for name, total in sums.items()}


def make_optimizer(model: torch.nn.Module, schedule: TrainSettings) -> torch.optim.Adam:
    """Adam with the run's learning rate and betas; no schedule, no weight decay."""
    return torch.optim.Adam(model.parameters(), lr=schedule.lr, betas=schedule.betas)


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    columns = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _data_identity(settings: RunSettings) -> str:
    """Which data a run trains on: the content hash of its manifest (every file's sha256,
    checked against the files before training), else the folder itself."""
    content = provenance.dataset_identity(Path(settings.data.root))["content_sha256"]
    return f"content {content}" if content else f"folder {settings.data.root}"


def _same_run(state: dict[str, Any], settings: RunSettings, ignore: tuple[str, ...]) -> bool:
    same = state["settings"].identity(ignore) == settings.identity(ignore)
    return same and state.get("data") == _data_identity(settings)


def _reusable(final: dict[str, Any], settings: RunSettings) -> bool:
    """A finished run is reused only when trained with the same settings (inference
    aside) on the same data by the same code."""
    same = _same_run(final, settings, EXECUTION_ONLY)
    return same and final.get("code") == code.fingerprint(code.TRAIN)


def _resumable(checkpoint: dict[str, Any], settings: RunSettings) -> bool:
    """The epoch count may change as long as the checkpoint lies before the end."""
    same = _same_run(checkpoint, settings, RESUMABLE_CHANGES)
    return same and checkpoint["epoch"] < settings.train.epochs


def _load_or_none(path: Path, force: bool) -> dict[str, Any] | None:
    """A checkpoint; with `force`, a damaged or unsafe one is None (it will be replaced)."""
    try:
        return load_checkpoint(path)
    except TrainingError:
        if not force:
            raise
        return None


def _start_state(out_dir: Path, settings: RunSettings, resume: bool, force: bool):
    """What to do with the run folder: ("reuse", final state), ("resume", checkpoint) or
    ("new", None) after clearing what was there. Refuses to discard anything unless
    `force` is given. A new or resumed model first removes what an older model left
    (its maps, metrics, cost and provenance: cnc.runs.DERIVED)."""
    final, ckpt = out_dir / FINAL, out_dir / CHECKPOINT
    remove_stale_temporaries(out_dir)
    remove_stale_temporaries(out_dir / MAPS_DIR)
    if final.exists():
        state = _load_or_none(final, force)
        if resume and state is not None and _reusable(state, settings):
            return "reuse", state
        if not force:
            why = "was trained with other settings, data or code" if resume else "is trained"
            raise AlreadyExistsError(f"{final}: the run {why}; pass --force to train it again")
    elif ckpt.exists():
        if resume:
            previous = _load_or_none(ckpt, force)
            if previous is not None and _resumable(previous, settings):
                remove_derived(out_dir)
                return "resume", previous
            if not force:
                raise TrainingError(
                    f"{ckpt}: was trained with other settings or data; pass --force to start over"
                )
        elif not force:
            raise AlreadyExistsError(
                f"{ckpt}: an unfinished run; pass --resume to continue it or --force to restart"
            )
    remove_derived(out_dir)
    for path in (final, ckpt, out_dir / TRAIN_LOG):
        path.unlink(missing_ok=True)
    for stale in out_dir.glob(f"{FEATURE_CACHE_PREFIX}*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    return "new", None


@dataclass
class Trained:
    state: dict[str, Any]  # what model.pt holds: weights, settings, history
    network: Network | None  # the network just trained, in eval mode; None when reused


def train(
    settings: RunSettings,
    out_dir: Path,
    resume: bool = False,
    force: bool = False,
    device: str = "cpu",
    progress: bool = True,
) -> Trained:
    """Train (or continue) the run in `out_dir`; returns the final state and network.

    `checkpoint.pt` holds the resumable state while training runs; at the end the final
    state is written to `model.pt` and the checkpoint removed. With `resume`, an
    unfinished run of the same settings continues, and a finished run of the same
    settings and code is reused as it is (its log rewritten); with `force`, anything
    else in the folder is replaced.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.resolved()
    action, previous = _start_state(out_dir, settings, resume, force)
    write_settings(out_dir, settings)
    if action == "reuse":
        _write_log(out_dir / TRAIN_LOG, previous["history"])
        return Trained(previous, None)
    ckpt_path = out_dir / CHECKPOINT
    schedule = settings.train
    arithmetic = precision.resolve(schedule.precision, device)
    precision.configure(arithmetic)

    def amp() -> AbstractContextManager:
        return precision.autocast(arithmetic, device)

    torch.manual_seed(settings.seed)
    encoder, model = build(settings, device)
    optimizer = make_optimizer(model, schedule)
    scaler = precision.scaler(arithmetic, device)
    shuffle = torch.Generator().manual_seed(settings.seed)
    noise = torch.Generator(device=device).manual_seed(settings.seed + 1)
    history: list[dict[str, float]] = []
    start = 0
    reference = reference_text(model, encoder)  # g_n^i before the first step
    if previous is not None:
        model.load_state_dict(previous["model"])
        optimizer.load_state_dict(previous["optimizer"])
        scaler.load_state_dict(previous["scaler"])
        history, start = previous["history"], previous["epoch"]
        reference = previous["diagnostics_reference"]

    data = _data_identity(settings)
    dataset = run_split(settings.data, "train", encoder.resolution, encoder.mean_std)
    if len(dataset) == 0:
        raise TrainingError(f"{settings.data.root}: no training images")
    workers = loader_workers(schedule.workers, device)
    if schedule.cache == "off":
        features: FeatureSource = Reencode(encoder, dataset, device, workers, amp)
    else:
        features = FeatureCache.build(
            encoder, dataset, device, schedule, out_dir, workers, amp, progress
        )
    if previous is not None:  # after the cache: its DataLoader draws from the global RNG
        _set_rng_state(previous["rng"], shuffle, noise)

    def snapshot(epoch: int) -> dict[str, Any]:
        return {
            "settings": settings.to_dict(),
            "epoch": epoch,
            "complete": epoch == schedule.epochs,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(shuffle, noise),
            "precision": arithmetic,
            "history": history,
            "encoder_fingerprint": encoder_fingerprint(encoder),
            "data": data,
            "code": code.fingerprint(code.TRAIN),
            "diagnostics_reference": reference,
        }

    try:
        for epoch in range(start, schedule.epochs):
            began = time.perf_counter()
            order = torch.randperm(len(dataset), generator=shuffle)
            terms = run_epoch(
                model,
                encoder,
                features,
                optimizer,
                order,
                schedule.batch_size,
                epoch,
                noise,
                progress,
                amp,
                scaler,
            )
            seconds = round(time.perf_counter() - began, 3)
            fixed = features.taps(diagnostic_batch(len(dataset), schedule.batch_size))
            with amp():
                checks = diagnose(model, encoder, fixed, epoch, settings.seed, reference)
            history.append({"epoch": epoch + 1, **terms, "seconds": seconds, **checks})
            _write_log(out_dir / TRAIN_LOG, history)
            done = epoch + 1
            if done % schedule.checkpoint_every == 0 and done < schedule.epochs:
                save_checkpoint(ckpt_path, snapshot(done))
            if progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
                tqdm.write(f"epoch {done}/{schedule.epochs}: {shown}")
    finally:
        if isinstance(features, FeatureCache):
            features.close()
    # The finished run keeps what inference and reuse need; the optimiser and generator
    # states (twice the weights' size) are only needed to resume.
    resumable = ("optimizer", "scaler", "rng")
    state = {k: v for k, v in snapshot(schedule.epochs).items() if k not in resumable}
    save_checkpoint(out_dir / FINAL, state)
    ckpt_path.unlink(missing_ok=True)
    return Trained({**state, "settings": settings}, Network(settings, encoder, model.eval()))

"""The jobs of the workflow, each holding its run folder while it works.

A training job trains a run, then writes its test maps in the same process (a torch
process takes seconds to start; two per run would double the smoke grid's time), with
the network still in memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnc import provenance
from cnc.inference.infer import infer_run, load_run
from cnc.model import precision
from cnc.model.backbone import resolve_weights
from cnc.pipeline import warm
from cnc.runs import COST, read_settings, run_lock
from cnc.settings import RunSettings
from cnc.training.cost import device_name, measure, write_cost
from cnc.training.devices import pick_device, use_cpu_threads
from cnc.training.loop import train
from cnc.training.preflight import check_data, preflight


@dataclass(frozen=True)
class JobResult:
    state: dict[str, Any]  # the finished run's state (cnc.runs)
    device: str
    threads: int  # torch's intra-op CPU threads: CPU results depend on them bit for bit
    warm: bool  # forked from the warm-start server (cnc.pipeline.warm)

    def summary(self, run_dir: Path) -> str:
        last = self.state["history"][-1]
        return (
            f"{run_dir}: epoch {self.state['epoch']}, distill {last['distill']:.4g}; "
            f"on {self.device}, {self.threads} CPU thread(s)"
            + (", warm start" if self.warm else "")
        )


def run_job(
    settings: RunSettings,
    run_dir: Path,
    resume: bool = False,
    force: bool = False,
    maps: bool = True,
    device: str = "auto",
    progress: bool = True,
) -> JobResult:
    """Train (or continue, or reuse) the run, then write its maps, what it cost and where
    it came from."""
    began = time.perf_counter()
    settings = settings.resolved()  # the run records where its data is, absolutely
    preflight(settings, run_dir, maps)
    with run_lock(run_dir, purpose="training"):
        device = pick_device(device)
        use_cpu_threads(settings.train.threads)
        trained = train(settings, run_dir, resume, force, device, progress)
        reused_cost = trained.network is None and (Path(run_dir) / COST).is_file()
        if maps:  # with the network in memory: one build per job
            network = trained.network or load_run(run_dir, device)
            inference = infer_run(run_dir, settings.infer, device, progress, network=network)
            if not reused_cost:  # the job that trained it measured the training
                arithmetic = precision.resolve(settings.train.precision, device)
                history = trained.state["history"]
                write_cost(run_dir, measure(network, history, inference, device, arithmetic))
        kept = None if trained.network is not None else provenance.read_training(run_dir)
        # rewritten even when kept (a reused run): a workflow output is as new as its job
        record = kept or training_provenance(settings, trained.state, device, began)
        provenance.write_training(run_dir, record)
    return JobResult(trained.state, device, torch.get_num_threads(), warm.in_child())


def training_provenance(
    settings: RunSettings, state: dict[str, Any], device: str, began: float
) -> dict[str, Any]:
    """The training job's record (cnc.provenance): code, packages, device, wall time of
    training and maps, the data's manifest hash and the encoder weights' identity."""
    b = settings.backbone
    record = provenance.step_record(device_name(device), time.perf_counter() - began)
    # the build (e.g. +cu130) and its CUDA: package metadata gives the version alone
    record["packages"] |= {"torch": torch.__version__, "cuda": torch.version.cuda}
    record["machine"]["cpu_threads"] = torch.get_num_threads()  # CPU numbers depend on it
    return {
        **record,
        "dataset": provenance.dataset_identity(Path(settings.data.root)),
        "weights": provenance.weights_identity(b.name, b.weights, state["encoder_fingerprint"]),
    }


def infer_job(
    run_dir: Path, overrides: list[str], device: str = "auto", progress: bool = True
) -> dict[str, Any]:
    """The test maps of a finished run, with its inference settings and `overrides`."""
    settings = read_settings(run_dir).with_overrides(overrides)
    check_data(settings.data)
    resolve_weights(settings.backbone.name, settings.backbone.weights)
    with run_lock(run_dir, purpose="inference"):
        use_cpu_threads(settings.train.threads)
        return infer_run(run_dir, settings.infer, pick_device(device), progress)

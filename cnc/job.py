"""One job of the workflow: a run's training, then its test maps, in one process (a
torch process takes seconds to start; two per run would double the smoke grid's time)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnc.infer import infer_run, pick_device
from cnc.settings import RunSettings
from cnc.train import train


@dataclass(frozen=True)
class JobResult:
    state: dict[str, Any]  # the finished run's state (cnc.runs)
    device: str
    threads: int  # torch's intra-op CPU threads: CPU results depend on them bit for bit

    def summary(self, run_dir: Path) -> str:
        last = self.state["history"][-1]
        return (
            f"{run_dir}: epoch {self.state['epoch']}, distill {last['distill']:.4g}; "
            f"on {self.device}, {self.threads} CPU thread(s)"
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
    """Train (or continue, or reuse) the run, then write its maps."""
    device = pick_device(device)
    trained = train(settings, run_dir, resume, force, device, progress)
    if maps:  # with the network in memory: one build per job
        infer_run(run_dir, settings.infer, device, progress, network=trained.network)
    return JobResult(trained.state, device, torch.get_num_threads())

"""One job of the workflow: a run's training, then its test maps, in one process (a
torch process takes seconds to start; two per run would double the smoke grid's time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnc.infer import infer_run, pick_device
from cnc.settings import RunSettings
from cnc.train import train


def run_job(
    settings: RunSettings,
    run_dir: Path,
    resume: bool = False,
    force: bool = False,
    maps: bool = True,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or continue, or reuse) the run, then write its maps; the final state."""
    device = pick_device(device)
    state = train(settings, run_dir, resume=resume, force=force, device=device, progress=progress)
    if maps:
        infer_run(run_dir, settings.infer, device=device, progress=progress)
    return state

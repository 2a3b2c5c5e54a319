"""The SLURM profile against a real one-node SLURM (slurm-wlm on localhost): a few
smoke-scale jobs go through snakemake-executor-plugin-slurm and sbatch."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from slurm_local import local_cluster, unavailable
from test_workflow import BIN, ROOT, project, small_params

from cnc.pipeline import grid

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))


def test_profile_asks_for_a_gpu_on_training_only():
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    train = (ROOT / "workflow/rules/train.smk").read_text()
    assert "gpu=1" in train
    for rule in ("evaluate.smk", "report.smk", "data.smk"):
        assert "gpu" not in (ROOT / "workflow/rules" / rule).read_text()


def test_smoke_jobs_run_through_the_slurm_executor(tmp_path):
    work = project(tmp_path)
    names = list(grid.grid_points(small_params()))[:2]
    targets = [f"results/runs/smoke/{n}/maps/protocol.json" for n in names]
    with local_cluster(tmp_path / "slurm") as env:
        env = {**env, "PATH": f"{BIN}:{env['PATH']}"}
        run = subprocess.run(
            [
                str(BIN / "snakemake"),
                "--profile",
                str(ROOT / "profiles/slurm"),
                "--jobs",
                "2",
                # The test cluster has no GPU, no accounting and no partitions to pick.
                "--set-resources",
                "train:gpu=0",
                "train:mem_mb=2000",
                "train:cpus_per_task=1",
                "--default-resources",
                "mem_mb=1000",
                "cpus_per_task=1",
                "runtime=30",
                "--slurm-no-account",
                "--slurm-keep-successful-logs",
                "--slurm-status-command",
                "squeue",
                "--slurm-init-seconds-before-status-checks",
                "1",
                *targets,
            ],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-6000:]
        accounting = (tmp_path / "slurm" / "slurmctld.log").read_text()
    for target in targets:
        assert (work / target).is_file()
    assert accounting.count("_job_complete") >= 2  # the training jobs ran under SLURM
    assert "SLURM run ID" in log
    # Each training job's SLURM log shows it ran through the job-step executor.
    logs = list((work / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert len(logs) == 2
    assert all("Finished jobid" in p.read_text() or "1 of 1 steps" in p.read_text() for p in logs)

"""Several jobs on one node: distinct GPUs, one process per run folder, a full disk named."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import config

import cnc.training.loop as training
from cnc.data.prepare import synthetic
from cnc.data.synthetic import SyntheticSpec
from cnc.io import DiskFullError
from cnc.runs import CHECKPOINT, MAPS_DIR, RunBusyError, load_checkpoint, run_lock
from cnc.training import devices
from cnc.training.devices import DeviceError, claim_gpu

HOLD = """
import sys, time
from pathlib import Path
{body}
Path(sys.argv[2]).write_text(str(result))
time.sleep(300)
"""
GPUS = ["GPU-a", "GPU-b", "GPU-c"]
CLAIM = HOLD.format(
    body="from cnc.training.devices import claim_gpu\n"
    f"result = claim_gpu({GPUS}, Path(sys.argv[1]))"
)
LOCK = HOLD.format(
    body="from cnc.runs import run_lock\n"
    "lock = run_lock(Path(sys.argv[1]))\nlock.__enter__()\nresult = 'held'"
)


def hold(script: str, target: Path, out: Path) -> subprocess.Popen:
    """Run `script` in a process that keeps what it took until killed; wait for it."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(target), str(out)])
    deadline = time.time() + 60
    while not out.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert out.exists(), "the holder did not start"
    return proc


def test_concurrent_jobs_claim_different_gpus_until_they_end(tmp_path):
    holders = [hold(CLAIM, tmp_path, tmp_path / f"claim{i}") for i in range(3)]
    try:
        claimed = {int((tmp_path / f"claim{i}").read_text()) for i in range(3)}
        assert claimed == {0, 1, 2}  # three processes, three GPUs
        with pytest.raises(DeviceError, match=r"all 3 GPUs of this node are claimed.*pid"):
            claim_gpu(GPUS, tmp_path, wait_s=0.3, poll_s=0.1)
        crashed = int((tmp_path / "claim1").read_text())
        holders[1].send_signal(signal.SIGKILL)  # a crash: the kernel drops its lock
        holders[1].wait()
        assert claim_gpu(GPUS, tmp_path, wait_s=5) == crashed
    finally:
        for proc in holders:
            proc.kill()
            proc.wait()


def test_auto_takes_a_free_gpu_and_a_lone_visible_one_as_it_is(tmp_path, monkeypatch):
    """CUDA simulated: three visible GPUs, the first claimed by another job."""
    monkeypatch.setenv(devices.LOCK_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices, "gpu_ids", lambda count: GPUS[:count])
    holder = hold(CLAIM, tmp_path, tmp_path / "other")
    try:
        assert int((tmp_path / "other").read_text()) == 0
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
        assert devices.pick_device("auto") == "cuda:1"
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # CUDA_VISIBLE_DEVICES=2
        assert devices.pick_device("auto") == "cuda:0"  # the scheduler's choice, unclaimed
        assert devices.pick_device("cuda:2") == "cuda:2"
    finally:
        holder.kill()
        holder.wait()


def test_a_second_process_on_a_run_names_the_first(tmp_path):
    from typer.testing import CliRunner

    from cnc.cli import app

    holder = hold(LOCK, tmp_path / "run", tmp_path / "held")
    try:
        busy = rf"cannot start writing while pid {holder.pid} on .* works on this run"
        with pytest.raises(RunBusyError, match=busy), run_lock(tmp_path / "run"):
            pass
        data = tmp_path / "data"  # the cheap checks (data, weights, disk) pass first
        synthetic(SyntheticSpec(image_size=48, classes=("wood",), train_per_class=1), data)
        args = ["train", str(tmp_path / "run"), "-s", f"data.root={data}", "--weights", "random"]
        args += ["-s", "data.dataset=synthetic", "-s", "train.epochs=1"]
        args += ["-s", "backbone.name=cnc-tiny-ViT-B-32", "-s", "backbone.resolution=64"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 1 and f"pid {holder.pid}" in result.output
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path / "run"):  # released with its process
        pass


def test_a_full_disk_at_a_checkpoint_keeps_the_last_good_one(data_root, tmp_path, monkeypatch):
    real, saves = torch.save, []

    def fill_up(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:  # the second checkpoint finds the disk full
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed "
                "writing file data/3: file write failed"
            )
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fill_up)
    run = tmp_path / "full"
    settings = config(data_root, epochs=6, checkpoint_every=2)
    with pytest.raises(DiskFullError, match=rf"{run / CHECKPOINT}: no space left .* MiB free"):
        training.train(settings, run, progress=False)
    assert load_checkpoint(run / CHECKPOINT)["epoch"] == 2  # the last good checkpoint
    assert not list(run.glob(".checkpoint.pt.*"))  # no half-written file left


def test_a_full_disk_while_writing_maps_names_the_file(data_root, tmp_path, monkeypatch):
    from cnc.inference.infer import infer_run

    run = tmp_path / "m"
    training.train(config(data_root, epochs=1), run, progress=False)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", no_space)
    with pytest.raises(DiskFullError, match=r"maps/(washer|wood)\.npz: no space left"):
        infer_run(run, progress=False)
    assert not (run / MAPS_DIR).exists()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from test_train import SPEC

    from cnc.data.prepare import synthetic

    root = Path(tmp_path_factory.mktemp("data")) / "synthetic"
    synthetic(SPEC, root)
    return root

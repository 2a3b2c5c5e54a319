"""Which device a job runs on, and how many CPU threads it uses. On a node with several
GPUs, concurrent jobs (`snakemake --cores N --resources gpu=G`) each claim a different
one.

`--device auto` takes the CPU without CUDA and the one GPU when one is visible (a scheduler
that sets CUDA_VISIBLE_DEVICES has already chosen). With several visible, the job claims
the first that no other process of this node holds: an exclusive `flock` on a file per
GPU (named by its UUID, so jobs that see different CUDA_VISIBLE_DEVICES still agree),
held until the process ends; the kernel releases it then, a crash included. Snakemake
does not set CUDA_VISIBLE_DEVICES itself, so without the claim every job would use GPU 0.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path
from typing import IO

from cnc.errors import UserError

LOCK_DIR_ENV = "CNC_LOCK_DIR"  # where the claims live; node-local by default
_claims: list[IO[str]] = []  # open lock files: a claim lasts as long as its process


class DeviceError(UserError):
    """No device could be claimed; the message says which processes hold them."""


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or tempfile.gettempdir())


def _lock_file(folder: Path, gpu: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in gpu)
    return folder / f"cnc-gpu-{safe}.lock"


def claim_gpu(
    ids: list[str], folder: Path | None = None, wait_s: float | None = None, poll_s: float = 1.0
) -> int:
    """The index (into `ids`) of a GPU no other process has claimed, now claimed by this
    one until it ends. Waits for one to be freed; after `wait_s` seconds (None: never)
    raises DeviceError naming the holders."""
    folder = Path(folder or lock_dir())
    folder.mkdir(parents=True, exist_ok=True)
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        holders = []
        for index, gpu in enumerate(ids):
            handle = open(_lock_file(folder, gpu), "a+")  # noqa: SIM115 (held open on purpose)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holders.append(f"{gpu}: {handle.read().strip() or 'a process'}")
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
            _claims.append(handle)
            return index
        if deadline is not None and time.monotonic() >= deadline:
            raise DeviceError(
                f"all {len(ids)} GPUs of this node are claimed ({'; '.join(holders)}); run "
                "fewer jobs at once (--resources gpu=N) or pass --device cuda:I"
            )
        time.sleep(poll_s)


def gpu_ids(count: int) -> list[str]:
    """A stable name for each visible GPU: its UUID (one physical GPU, one lock file)."""
    import torch

    names = []
    for index in range(count):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        names.append(str(uuid) if uuid else f"visible{index}")
    return names


def loader_workers(setting: int | None, device: str) -> int:
    """DataLoader workers: the setting, else none on a CPU (the training shares its
    cores) and up to 8 on a GPU (decoding 1024-px PNGs must keep up with it)."""
    if setting is not None:
        return setting
    return min(8, os.cpu_count() or 1) if str(device).startswith("cuda") else 0


def cpu_threads(wanted: int | None) -> int:
    """The CPU threads a job uses: `wanted` (train.threads), never more than the workflow
    gives it (OMP_NUM_THREADS: Snakemake sets it to the job's `threads`, which it caps at
    `--cores`) nor than the CPUs this process may run on; None: all of those. On a CPU a
    run's numbers depend on this count bit for bit, so it is recorded with the run."""
    limits = [len(os.sched_getaffinity(0))]
    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        limits.append(int(given))
    if wanted:
        limits.append(wanted)
    return min(limits)


def use_cpu_threads(wanted: int | None) -> int:
    """Set torch's intra-op threads to `cpu_threads(wanted)`; returns the count."""
    import torch

    count = cpu_threads(wanted)
    torch.set_num_threads(count)
    return count


def pick_device(device: str = "auto") -> str:
    """`auto`: the CPU without CUDA, the only visible GPU, or a claimed free one."""
    if device != "auto":
        return device
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    return "cuda:0" if count == 1 else f"cuda:{claim_gpu(gpu_ids(count))}"

"""Where a result came from: the code (git commit, uncommitted changes, a hash of the
package's sources), the package versions, the machine and device, the data (its
manifest's hash), the encoder weights and the wall time.

A training job records it in the run folder (provenance.json); evaluation carries it
into metrics.json with its own; the reports summarise it under every table and in
summary.json. Torch-free: the evaluation process records it too.
"""

from __future__ import annotations

import hashlib
import json
import platform
import resource
import socket
import subprocess
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from cnc import code
from cnc.data.manifest import MANIFEST
from cnc.io import read_json, sha256_file, write_json
from cnc.runs import PROVENANCE

PACKAGES = (
    "cnc-bench",
    "torch",
    "torchvision",
    "open_clip_torch",
    "numpy",
    "scipy",
    "scikit-image",
    "pandas",
    "matplotlib",
)
CHECKOUT = code.ROOT  # the git checkout the package runs from, if it is one
CODE_PATHS = ("cnc", "pyproject.toml")  # a change elsewhere (results, dvc.lock) is not code


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@lru_cache(maxsize=1)
def code_state() -> dict[str, Any]:
    """The git commit of the checkout the package runs from and its uncommitted changes
    to the code (None outside a git checkout, e.g. an installed wheel), and a hash of
    the package's sources that identifies the code either way."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", *CODE_PATHS) if commit else None
    changed = [line[3:] for line in (status or "").splitlines()]
    return {
        "commit": commit.strip() if commit else None,
        "dirty": bool(changed) if commit else None,
        "changed": changed[:20],
        "sources": code.fingerprint(("cnc",)),
    }


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where the platform module has none)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: str | None = None) -> dict[str, Any]:
    """The host, its system and the device a step ran on (`device`: a name, e.g. from
    cnc.training.cost.device_name; the CPU's by default)."""
    return {
        "host": socket.gethostname(),
        "system": platform.platform(),
        "device": device or f"CPU: {cpu_name()}",
    }


def dataset_identity(root: Path) -> dict[str, Any]:
    """The data root and a sha256 of its manifest's file list (every file with its own
    sha256, cnc.data.manifest; not of the manifest file, which records when it was
    written): two runs with the same hash saw the same bytes."""
    manifest = Path(root) / MANIFEST
    files = read_json(manifest).get("files") if manifest.is_file() else None
    canonical = json.dumps(files, sort_keys=True).encode()
    return {
        "root": str(root),
        "content_sha256": hashlib.sha256(canonical).hexdigest() if files else None,
    }


def weights_identity(backbone: str, weights: str, fingerprint: str) -> dict[str, Any]:
    """The encoder's architecture, its weights setting (a pretrained tag, a file or
    `random`), the file's sha256 when it is one, and a hash of its frozen tensors."""
    path = Path(weights)
    return {
        "backbone": backbone,
        "weights": weights,
        "file_sha256": sha256_file(path) if path.is_file() else None,
        "tensor_fingerprint": fingerprint,
    }


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (data-loading workers). A
    process forked by the warm-start server counts from its fork: its own work only."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def step_record(device: str | None, seconds: float) -> dict[str, Any]:
    """What any step records: code, packages, machine, wall and CPU time (the job
    measures itself: a Snakemake benchmark file of a warm-started job would measure the
    thin client), when it finished."""
    return {
        "code": dict(code_state()),
        "packages": dict(package_versions()),  # copies: the cached ones stay as found
        "machine": machine(device),
        "wall_s": round(seconds, 3),
        "cpu_s": round(cpu_seconds(), 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_training(run_dir: Path, record: dict[str, Any]) -> None:
    write_json(Path(run_dir) / PROVENANCE, record)


def read_training(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / PROVENANCE
    return read_json(path) if path.is_file() else None


def _code_text(state: dict[str, Any]) -> str:
    if state.get("commit"):
        return state["commit"][:10] + (" with uncommitted changes" if state.get("dirty") else "")
    return f"sources {state.get('sources')} (not a git checkout)"


def summary(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The distinct values, over runs' metrics.json provenance, of what decides whether
    numbers compare: code, device, data manifest, weights, torch and open_clip versions.
    Facts a run did not record (trained before provenance was kept) are left out."""
    seen: dict[str, dict[str, None]] = {}

    def add(key: str, value: str | None) -> None:
        if value:
            seen.setdefault(key, {})[value] = None

    for record in records:
        train = record.get("train") or {}
        for step in (train, record.get("evaluate") or {}):
            if step.get("code"):
                add("code", _code_text(step["code"]))
        machine = train.get("machine") or {}
        add("device", machine.get("device"))
        if str(machine.get("device", "")).startswith("CPU") and machine.get("cpu_threads"):
            add("CPU threads", str(machine["cpu_threads"]))
        add("data content sha256", ((train.get("dataset") or {}).get("content_sha256") or "")[:16])
        if weights := train.get("weights"):
            add("weights", f"{weights['weights']} (tensors {weights['tensor_fingerprint']})")
        for name in ("torch", "open_clip_torch"):
            add(name, (train.get("packages") or {}).get(name))
    return {key: list(values) for key, values in seen.items()}

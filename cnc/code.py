"""The code each workflow stage's results depend on, listed once: DVC's `deps` and the
fingerprint by which a finished run is reused (never a stale model passed off as new).
Paths are relative to the project root, where `cnc/` is the package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("cnc/settings.py", "cnc/schema.yaml", "cnc/pipeline/experiments.py",
            "cnc/pipeline/grid.py")  # fmt: skip
DATA = ("cnc/data",)
TRAIN = ("cnc/model", "cnc/training/loop.py", "cnc/data/dataset.py", "cnc/data/images.py")
INFER = ("cnc/pipeline/jobs.py", "cnc/inference/infer.py", "cnc/evaluation/maps.py",
         "cnc/training/cost.py", "cnc/runs.py")  # fmt: skip
EVALUATE = ("cnc/evaluation",)
REPORT = ("cnc/report", "cnc/pipeline/experiments.py")


SOURCE_SUFFIXES = (".py", ".json", ".yaml")  # code, model configs, schema


def files(paths: tuple[str, ...]) -> list[Path]:
    """The source files under `paths` (folders expanded), sorted."""
    found: list[Path] = []
    for path in map(ROOT.joinpath, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in SOURCE_SUFFIXES)
        else:
            found.append(path)
    return found


def fingerprint(paths: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for path in files(paths):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]

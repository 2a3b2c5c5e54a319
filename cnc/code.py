"""The code each workflow stage's results depend on, listed once: DVC's `deps` and the
fingerprint by which a finished run is reused (never a stale model passed off as new).
Paths are relative to the project root, where `cnc/` is the package.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("cnc/settings.py", "cnc/schema.yaml", "cnc/experiments.py", "cnc/grid.py")
DATA = ("cnc/data",)
TRAIN = ("cnc/model", "cnc/train.py", "cnc/data/dataset.py", "cnc/data/images.py")  # weights
INFER = ("cnc/job.py", "cnc/infer.py", "cnc/evaluation/maps.py", "cnc/cost.py", "cnc/runs.py")
EVALUATE = ("cnc/evaluation",)
REPORT = ("cnc/report", "cnc/experiments.py")


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

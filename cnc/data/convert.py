"""Raw dataset layouts -> the MVTec layout: which converter converts which dataset
(`CONVERTERS`, named by cnc.data.registry's `convert`).

Every converter takes the extracted raw folder and an empty output folder (the caller
renames it into place only when the conversion and the checks succeed: all or nothing),
copies or moves each image once, and returns what the manifest should record beyond the
files (e.g. test sets it leaves out).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnc.data import btad, mvtec_ad2, realiad, visa
from cnc.data.raw import find_root


def _convert_visa(raw: Path, out: Path, move: bool = False, **_: Any) -> dict[str, Any]:
    visa.convert(raw, out, move=move)
    return {}


def _copy_mvtec_layout(raw: Path, out: Path, move: bool = False, **_: Any) -> dict[str, Any]:
    """A dataset already in the MVTec layout (MPDD): its class folders, as they are."""
    root = find_root(raw, lambda p: any((c / "train").is_dir() for c in p.iterdir()), "dataset")
    for cls in sorted(p for p in root.iterdir() if (p / "train").is_dir()):
        (shutil.move if move else shutil.copytree)(cls, out / cls.name)
    return {}


CONVERTERS: dict[str, Callable[..., dict[str, Any]]] = {
    "visa": _convert_visa,
    "btad": lambda raw, out, move=False, **_: btad.convert(raw, out, move=move),
    "mvtec_ad2": lambda raw, out, move=False, **_: mvtec_ad2.convert(raw, out, move=move),
    "realiad": realiad.convert,
    "": _copy_mvtec_layout,
}

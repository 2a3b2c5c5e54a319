"""Raw dataset layouts -> the MVTec layout: what the converters share, and which one
converts which dataset (`CONVERTERS`, named by cnc.data.registry's `convert`).

Every converter takes the extracted raw folder and an empty output folder (the caller
renames it into place only when the conversion and the checks succeed: all or nothing),
copies or moves each image once, and returns what the manifest should record beyond the
files (e.g. test sets it leaves out).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnc.data.layout import IMAGE_SUFFIXES
from cnc.errors import UserError


class ConvertError(UserError, ValueError):
    """A raw dataset does not look as published; the message names the file."""


def images_in(folder: Path) -> list[Path]:
    """The image files directly in `folder` (none when it does not exist), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def place(src: Path, dest: Path, move: bool, seen: set[Path]) -> None:
    """Copy (or, with `move`, rename) one file. A file placed twice (one image in both
    splits) or two files for one destination are errors naming them, never a silent
    overwrite: `seen` holds the sources and destinations placed so far."""
    if src in seen:
        raise ConvertError(f"{src}: listed twice (in both splits, or twice in one)")
    if dest in seen:
        raise ConvertError(f"{src}: a second file for {dest}; the raw folder lists it twice")
    seen.update((src, dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, dest)
    else:
        shutil.copyfile(src, dest)


def find_root(raw: Path, is_root: Callable[[Path], bool], what: str) -> Path:
    """The folder under `raw` (itself, or one or two levels of wrapping folders, as
    archives have) for which `is_root` holds."""
    raw = Path(raw)
    levels = [[raw]]
    for _ in range(2):
        below = [c for p in levels[-1] if p.is_dir() for c in sorted(p.iterdir())]
        levels.append([c for c in below if c.is_dir()])
    for level in levels:
        found = [p for p in level if is_root(p)]
        if found:
            return found[0]
    raise ConvertError(f"{raw}: not the extracted {what}; expected {what}'s folders in it")


def _convert_visa(raw: Path, out: Path, move: bool = False, **_: Any) -> dict[str, Any]:
    from cnc.data import visa

    visa.convert(raw, out, move=move)
    return {}


def _convert_btad(raw: Path, out: Path, move: bool = False, **_: Any) -> dict[str, Any]:
    from cnc.data import btad

    return btad.convert(raw, out, move=move)


def _convert_mvtec_ad2(raw: Path, out: Path, move: bool = False, **_: Any) -> dict[str, Any]:
    from cnc.data import mvtec_ad2

    return mvtec_ad2.convert(raw, out, move=move)


def _convert_realiad(raw: Path, out: Path, move: bool = False, **options: Any) -> dict[str, Any]:
    from cnc.data import realiad

    return realiad.convert(raw, out, move=move, **options)


def _copy_mvtec_layout(raw: Path, out: Path, move: bool = False, **_: Any) -> dict[str, Any]:
    """A dataset already in the MVTec layout (MPDD): its class folders, as they are."""
    root = find_root(raw, lambda p: any((c / "train").is_dir() for c in p.iterdir()), "dataset")
    for cls in sorted(p for p in root.iterdir() if (p / "train").is_dir()):
        (shutil.move if move else shutil.copytree)(cls, out / cls.name)
    return {}


CONVERTERS: dict[str, Callable[..., dict[str, Any]]] = {
    "visa": _convert_visa,
    "btad": _convert_btad,
    "mvtec_ad2": _convert_mvtec_ad2,
    "realiad": _convert_realiad,
    "": _copy_mvtec_layout,
}

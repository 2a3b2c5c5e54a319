"""What the converters of raw dataset layouts share: finding the dataset in an extracted
archive, listing its images, and placing each file once in the MVTec layout."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

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
    level = [Path(raw)]
    for _ in range(3):  # itself, then each level below, listed only when needed
        found = [p for p in level if is_root(p)]
        if found:
            return found[0]
        level = [c for p in level for c in sorted(p.iterdir()) if c.is_dir()]
    raise ConvertError(f"{raw}: not the extracted {what}; expected {what}'s folders in it")

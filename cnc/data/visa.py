"""VisA to MVTec layout, following the `split_csv/1cls.csv` split.

Each row `object,split,label,image,mask` becomes `<cls>/<split>/{good|bad}/<name>`;
anomalous test rows also get `<cls>/ground_truth/bad/<stem>_mask.png`, binarised
(VisA masks hold defect-class indices: any value != 0 becomes 255).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from cnc.data.layout import GOOD, MASK_SUFFIX
from cnc.errors import UserError

SPLIT_CSV = Path("split_csv") / "1cls.csv"
HEADER = ["object", "split", "label", "image", "mask"]
BAD = "bad"


class VisaError(UserError, ValueError):
    """The VisA archive does not look as published; the message names the file."""


def read_split(raw: Path) -> list[dict[str, str]]:
    """Rows of 1cls.csv; CRLF, LF and stray whitespace are all accepted."""
    path = Path(raw) / SPLIT_CSV
    if not path.is_file():
        raise VisaError(f"{path}: not found; is {raw} the extracted VisA archive?")
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text.replace("\r\n", "\n").replace("\r", "\n"))))
    header = [h.strip() for h in rows[0]] if rows else []
    if header != HEADER:
        raise VisaError(f"{path}: header {header}, expected {HEADER}")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise VisaError(f"{path}:{line}: {len(row)} fields, expected {len(HEADER)}")
        out.append(dict(zip(HEADER, (cell.strip() for cell in row), strict=True)))
    return out


def binarise_mask(src: Path, dest: Path) -> None:
    values = np.asarray(Image.open(src).convert("L"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(((values != 0) * 255).astype(np.uint8)).save(dest, format="PNG")


def convert(raw: Path, out: Path, move: bool = False) -> None:
    """Write the MVTec-layout copy of the extracted VisA folder `raw` into `out`.

    With `move`, images are renamed instead of copied (same file system, no extra space).
    """
    raw, out = Path(raw), Path(out)
    seen: set[Path] = set()
    for row in read_split(raw):
        split = row["split"]
        if split not in ("train", "test"):
            raise VisaError(f"{raw / SPLIT_CSV}: unknown split {split!r} for {row['image']}")
        anomalous = row["label"] == "anomaly"
        if row["label"] not in ("normal", "anomaly"):
            raise VisaError(f"{raw / SPLIT_CSV}: unknown label {row['label']!r}")
        src = raw / row["image"]
        if not src.is_file():
            raise VisaError(f"{src}: listed in {SPLIT_CSV} but missing from the archive")
        folder = BAD if anomalous else GOOD
        dest = out / row["object"] / split / folder / src.name
        if dest in seen:
            raise VisaError(f"{src}: two rows of {SPLIT_CSV} map to {dest}")
        seen.add(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(src, dest)
        else:
            dest.write_bytes(src.read_bytes())
        if anomalous and split == "test":
            if not row["mask"]:
                raise VisaError(f"{raw / SPLIT_CSV}: anomalous test image {src} has no mask")
            mask_dest = out / row["object"] / "ground_truth" / BAD / f"{src.stem}{MASK_SUFFIX}.png"
            binarise_mask(raw / row["mask"], mask_dest)

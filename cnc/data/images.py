"""Decoding image and mask files of any pixel format, scaled by their real depth, or a
clear error naming the file.

Pillow's own conversions clip a 16-bit gray image (mode I;16, common from industrial
cameras) at 255, so every pixel would read as white; here 16-bit gray is divided by
65535 at full precision. Pillow decodes 16-bit colour PNG and TIFF at 8 bits per channel
(the high byte: the same scale). Palette, CMYK and bilevel images become RGB; an alpha
channel is composited over black (a transparent pixel has no colour of its own). 32-bit
integer and floating-point images have no agreed scale and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnc.errors import BadFileError

GRAY16 = ("I;16", "I;16B", "I;16L", "I;16N")
ALPHA = ("RGBA", "LA", "PA", "La", "RGBa")
REFUSED = ("I", "F")  # 32-bit integer or float: unless they hold 16-bit data (GRAY16 rule)
_NAMES = {"1": "bilevel", "L": "gray", "P": "palette", "RGB": "RGB", "CMYK": "CMYK",
          "YCbCr": "YCbCr", "LAB": "Lab", "HSV": "HSV", "F": "float"}  # fmt: skip
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
FIX = "replace or convert the file"


@dataclass(frozen=True)
class Picture:
    """A decoded image and the bits per channel its file stores (Pillow's mode may say
    fewer: 16-bit colour is decoded at 8; the file's own layout is gone once decoded)."""

    image: Image.Image
    bits: int

    @property
    def gray16(self) -> bool:
        return self.image.mode in GRAY16 or (self.image.mode == "I" and self.bits <= 16)

    @property
    def format(self) -> str:
        """E.g. "8-bit RGB", "16-bit gray", "16-bit RGBA": what `cnc data check` reports."""
        mode = self.image.mode
        if mode in GRAY16 or mode == "I":
            name = "gray" if self.bits <= 16 else "integer"
        else:
            name = _NAMES.get(mode, mode)
        return "1-bit bilevel" if self.bits == 1 else f"{self.bits}-bit {name}"

    def refuse_unscaled(self, path: Path) -> None:
        if self.image.mode in REFUSED and not self.gray16:
            raise BadFileError(
                f"{path}: {self.format} image, which has no agreed scale; convert it to 8- or "
                "16-bit integers"
            )


def stored_bits(im: Image.Image) -> int:
    """Bits per channel as the (not yet decoded) file stores them."""
    if im.mode == "1":
        return 1
    raw = im.tile[0].args if im.tile else None
    raw = raw if isinstance(raw, str) else (raw[0] if raw else im.mode)
    found = re.search(r";(\d+)", str(raw))
    if found:
        return int(found.group(1))
    return 32 if im.mode in REFUSED else 8


def header_format(path: Path) -> str | None:
    """The pixel format from the header alone (None when unreadable)."""
    try:
        with Image.open(path) as im:
            return Picture(im, stored_bits(im)).format
    except _DECODE_ERRORS:
        return None


@contextmanager
def opened(path: Path) -> Iterator[Picture]:
    """The image at `path`, fully decoded; a damaged or unknown file is a BadFileError
    naming it (Pillow's own errors name no file)."""
    im = None
    try:
        im = Image.open(path)
        bits = stored_bits(im)
        im.load()  # decodes every byte: a truncated file fails here, not later
    except _DECODE_ERRORS as exc:
        if im is not None:
            im.close()
        raise BadFileError(f"{path}: unreadable or truncated image ({exc}); {FIX}") from None
    with im:  # the caller's own errors pass through unchanged
        yield Picture(im, bits)


def _rgb8(im: Image.Image) -> Image.Image:
    """8-bit RGB, alpha composited over black."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ALPHA:
        im = im.convert("RGBA")
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, im).convert("RGB")
    return im.convert("RGB")


def load_image(path: Path, size: int) -> np.ndarray:
    """float32 (size, size, 3) RGB in [0, 1], resized with bicubic interpolation.

    8-bit images are resized as 8-bit (as every CLIP pipeline does) and then divided by
    255; 16-bit gray is resized at full precision."""
    with opened(path) as picture:
        picture.refuse_unscaled(path)
        im = picture.image
        try:
            if picture.gray16:
                gray = Image.fromarray(np.asarray(im, dtype=np.float32) / np.float32(65535))
                resized = gray.resize((size, size), Image.Resampling.BICUBIC)
                values = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
                return np.repeat(values[..., None], 3, axis=2)
            rgb = _rgb8(im).resize((size, size), Image.Resampling.BICUBIC)
        except _DECODE_ERRORS as exc:
            raise BadFileError(f"{path}: cannot convert the image ({exc}); {FIX}") from None
    return np.asarray(rgb).astype(np.float32) / np.float32(255)


def display_image(path: Path, size: int) -> np.ndarray:
    """uint8 (size, size, 3): the image as `load_image` reads it, for figures."""
    return np.round(load_image(path, size) * 255).astype(np.uint8)


def mask_pixels(path: Path) -> np.ndarray:
    """bool (H, W) at the file's own size: any non-zero value of any colour channel is a
    defect (0/255, 0/1, 16-bit and label-index masks alike); alpha is ignored."""
    with opened(path) as picture:
        picture.refuse_unscaled(path)
        im = picture.image.convert("RGBA") if picture.image.mode == "P" else picture.image
        values = np.asarray(im)
    if values.ndim == 3:
        colour = values[..., :3] if values.shape[2] >= 3 else values[..., :1]
        return (colour != 0).any(axis=2)
    return values != 0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header alone."""
    try:
        with Image.open(path) as im:
            return im.size
    except _DECODE_ERRORS as exc:
        raise BadFileError(f"{path}: unreadable image ({exc}); {FIX}") from None


def describe(path: Path) -> str:
    """The pixel format of a decodable image; a BadFileError otherwise."""
    with opened(path) as picture:
        picture.refuse_unscaled(path)
        return picture.format

"""Deterministic synthetic anomaly-detection benchmarks in the MVTec layout.

Two sets, one per role of the paper's datasets at the smoke scale:
- `synthetic` (MVTec AD's role): three texture classes (wood, carpet, grid) and three
  single objects (washer, capsule, chip);
- `synthetic_visa` (VisA's role): VisA-like scenes of several parts or complex
  structure (pcb, candle, capsules, macaroni): a board with components, four candles,
  a loose group of capsules, four pasta pieces.
Every image has its own variation (texture phase and warp, object pose, colour and
lighting), and defective images get one defect drawn from geometry, so the pixel mask
is exact. Each image is generated from its own seed (seed, class, split, index): the
same seed gives byte-identical PNG files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from cnc.data.layout import GOOD, MASK_SUFFIX
from cnc.errors import SettingsError
from cnc.schema import validate

TEXTURES = ("wood", "carpet", "grid")
OBJECTS = ("washer", "capsule", "chip")
MVTEC_LIKE = TEXTURES + OBJECTS
VISA_LIKE = ("pcb", "candle", "capsules", "macaroni")
CLASSES = MVTEC_LIKE + VISA_LIKE  # appended: a class's seed is its index here
SETS = {"synthetic": MVTEC_LIKE, "synthetic_visa": VISA_LIKE}  # dataset name -> classes

# Defect kinds each class can show; every kind appears in at least one class.
DEFECTS: dict[str, tuple[str, ...]] = {
    "wood": ("scratch", "hole", "stain", "contamination"),
    "carpet": ("hole", "stain", "contamination", "scratch"),
    "grid": ("scratch", "hole", "contamination"),
    "washer": ("scratch", "hole", "stain", "misplaced"),
    "capsule": ("scratch", "hole", "stain", "contamination", "misplaced"),
    "chip": ("misplaced", "scratch", "contamination", "hole"),
    "pcb": ("misplaced", "scratch", "contamination", "hole"),
    "candle": ("stain", "contamination", "hole", "misplaced"),
    "capsules": ("scratch", "stain", "hole", "misplaced"),
    "macaroni": ("scratch", "hole", "stain", "contamination"),
}
SPLIT_IDS = {"train": 0, "test": 1}
MIN_SIZE = 48  # smaller images cannot show every defect kind on every class (schema too)


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that decides the generated files (types and ranges: cnc/schema.yaml)."""

    seed: int = 0
    image_size: int = 128
    classes: tuple[str, ...] = MVTEC_LIKE
    train_per_class: int = 16  # keeps the smoke grid's training minutes short
    test_per_class: int = 24  # a third normal, the rest anomalous

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        validate(self.to_dict(), "synthetic dataset", "synthetic", "data.synthetic.")
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown:
            raise SettingsError(
                f"data.synthetic.classes: unknown {unknown}; choose from {list(CLASSES)}"
            )

    def to_dict(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}

    @property
    def test_good(self) -> int:
        return max(1, self.test_per_class // 3)


@dataclass
class Scene:
    """A rendered normal image with what defects need to know about it."""

    image: np.ndarray  # float (S, S, 3) in [0, 1]
    background: np.ndarray  # what shows through a hole (objects) or a dark backing (textures)
    support: np.ndarray | None  # bool object mask; None for textures (defects go anywhere)


# ----------------------------------------------------------------------------- helpers


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return xx, yy


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Smooth Gaussian noise field with unit standard deviation."""
    field = gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _rotate(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, angle: float):
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _box_sdf(u: np.ndarray, v: np.ndarray, hw: float, hh: float, radius: float = 0.0):
    """Signed distance (pixels) to a rounded box centred at 0; negative inside."""
    qx = np.abs(u) - (hw - radius)
    qy = np.abs(v) - (hh - radius)
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - radius


def _blob_sdf(rng, xx, yy, cx: float, cy: float, radius: float) -> np.ndarray:
    """Irregular blob: a circle whose radius wobbles with a few angular harmonics."""
    dx, dy = xx - cx, yy - cy
    theta = np.arctan2(dy, dx)
    wobble = np.ones_like(theta)
    for k in (2, 3, 5):
        wobble += rng.uniform(0.0, 0.25 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(dx, dy) - radius * wobble


def _coverage(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the region sdf < 0."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _mix(image: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    return image * (1 - alpha[..., None]) + np.asarray(colour) * alpha[..., None]


def _jitter_colour(rng, base, amount: float = 0.08) -> np.ndarray:
    return np.clip(np.asarray(base) * (1 + amount * rng.standard_normal(3)), 0, 1)


# ----------------------------------------------------------------------------- textures


def _wood(rng, size: int) -> Scene:
    xx, yy = _grid(size)
    u, _ = _rotate(xx, yy, size / 2, size / 2, rng.normal(0, 0.08))
    warp = _noise(rng, size, size / 6) * size * 0.03
    period = size / rng.uniform(9, 13)
    grain = 0.5 + 0.5 * np.sin(2 * np.pi * (u + warp) / period + rng.uniform(0, 2 * np.pi))
    fine = _noise(rng, size, 0.7) * 0.035 + _noise(rng, size, 3) * 0.03
    lum = 0.78 + 0.3 * grain**3 + fine
    image = _jitter_colour(rng, (0.62, 0.42, 0.24)) * lum[..., None]
    backing = np.full_like(image, 0.08)
    return Scene(np.clip(image, 0, 1), backing, None)


def _carpet(rng, size: int) -> Scene:
    xx, yy = _grid(size)
    period = rng.uniform(3.5, 4.5)
    phase = rng.uniform(0, 2 * np.pi, 2)
    weave = np.sin(2 * np.pi * xx / period + phase[0]) * np.sin(2 * np.pi * yy / period + phase[1])
    fibres = _noise(rng, size, 0.8) * 0.09 + _noise(rng, size, 5) * 0.05
    lum = 0.75 + 0.12 * weave + fibres
    image = _jitter_colour(rng, (0.45, 0.5, 0.42), 0.05) * lum[..., None]
    backing = np.full_like(image, 0.12)
    return Scene(np.clip(image, 0, 1), backing, None)


def _grid_texture(rng, size: int) -> Scene:
    xx, yy = _grid(size)
    u, v = _rotate(xx, yy, size / 2, size / 2, rng.normal(0, 0.03))
    period = size / rng.uniform(7, 9)
    width = rng.uniform(1.6, 2.4) * size / 128
    offset = rng.uniform(0, period, 2)

    def line(coord, off):
        distance = np.abs(np.mod(coord - off + period / 2, period) - period / 2)
        return np.clip(width / 2 + 0.5 - distance, 0, 1)

    lines = np.maximum(line(u, offset[0]), line(v, offset[1]))
    lum = 0.18 + 0.55 * lines + _noise(rng, size, 1.0) * 0.03 + _noise(rng, size, 8) * 0.03
    image = np.repeat(np.clip(lum, 0, 1)[..., None], 3, axis=2)
    backing = np.full_like(image, 0.02)
    return Scene(image, backing, None)


# ----------------------------------------------------------------------------- objects


def _background(rng, size: int, base) -> np.ndarray:
    xx, yy = _grid(size)
    gx, gy = rng.normal(0, 0.12, 2)
    light = 0.92 + gx * (xx / size - 0.5) + gy * (yy / size - 0.5)
    light = light + _noise(rng, size, 1.0) * 0.012
    return np.clip(_jitter_colour(rng, base, 0.05) * light[..., None], 0, 1)


def _washer(rng, size: int) -> Scene:
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.2, 0.22, 0.25))
    cx, cy = size / 2 + rng.normal(0, size * 0.03, 2)
    r_out = size * 0.32 * rng.uniform(0.96, 1.04)
    r_in = r_out * rng.uniform(0.42, 0.48)
    d = np.hypot(xx - cx, yy - cy)
    ring = np.maximum(d - r_out, r_in - d)
    angle = rng.uniform(0, 2 * np.pi)  # pose: where the notch is
    u, v = _rotate(xx, yy, cx, cy, angle)
    notch = _box_sdf(u - r_out, v, size * 0.06, size * 0.045)
    shape = np.maximum(ring, -notch)
    light_dir = rng.uniform(0, 2 * np.pi)
    shading = 0.75 + 0.25 * np.cos(np.arctan2(yy - cy, xx - cx) - light_dir)
    metal = _jitter_colour(rng, (0.72, 0.72, 0.7), 0.05) * shading[..., None]
    image = bg * (1 - _coverage(shape)[..., None]) + metal * _coverage(shape)[..., None]
    return Scene(np.clip(image, 0, 1), bg, shape < 0)


def _capsule(rng, size: int) -> Scene:
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.85, 0.85, 0.82))
    cx, cy = size / 2 + rng.normal(0, size * 0.03, 2)
    u, v = _rotate(xx, yy, cx, cy, rng.uniform(-0.35, 0.35))
    half_len, radius = size * 0.34, size * 0.12 * rng.uniform(0.95, 1.05)
    shape = _box_sdf(u, v, half_len, radius, radius)
    cylinder = 1 - 0.35 * np.clip(v / radius, -1, 1) ** 2
    cap = _jitter_colour(rng, (0.75, 0.15, 0.12), 0.06)
    body = _jitter_colour(rng, (0.95, 0.93, 0.85), 0.03)
    seam = _coverage(np.abs(u + size * 0.02) - 0.6)
    colour = np.where((u < -size * 0.02)[..., None], cap, body) * cylinder[..., None]
    colour = colour * (1 - 0.25 * seam[..., None])
    image = bg * (1 - _coverage(shape)[..., None]) + colour * _coverage(shape)[..., None]
    return Scene(np.clip(image, 0, 1), bg, shape < 0)


def _chip(rng, size: int) -> Scene:
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.3, 0.5, 0.32))  # a green board
    cx, cy = size / 2 + rng.normal(0, size * 0.03, 2)
    u, v = _rotate(xx, yy, cx, cy, rng.normal(0, 0.12))
    body = _box_sdf(u, v + size * 0.05, size * 0.2, size * 0.14, size * 0.02)
    pins = np.full_like(u, np.inf)
    for offset in (-0.12, 0.0, 0.12):
        pin = _box_sdf(u - offset * size, v - size * 0.17, size * 0.025, size * 0.1)
        pins = np.minimum(pins, pin)
    image = bg.copy()
    image = _mix(image, _jitter_colour(rng, (0.78, 0.76, 0.7), 0.04), _coverage(pins))
    body_colour = _jitter_colour(rng, (0.12, 0.12, 0.13), 0.1)
    texture = 1 + _noise(rng, size, 1.5)[..., None] * 0.05
    image = (
        image * (1 - _coverage(body)[..., None])
        + body_colour * texture * _coverage(body)[..., None]
    )
    return Scene(np.clip(image, 0, 1), bg, np.minimum(body, pins) < 0)


# ----------------------------------------------------------------------------- VisA-like


def _pcb(rng, size: int) -> Scene:
    """A board with an IC, two resistors, a capacitor and copper traces."""
    xx, yy = _grid(size)
    board = _background(rng, size, (0.16, 0.42, 0.2))
    image = board.copy()
    u, v = _rotate(xx, yy, size / 2, size / 2, rng.normal(0, 0.04))
    for offset in (-0.3, -0.1, 0.1, 0.3):  # traces
        trace = np.abs(v - offset * size - rng.normal(0, 0.01) * size) - size * 0.012
        image = _mix(image, (0.72, 0.55, 0.25), _coverage(trace) * 0.8)
    jitter = rng.normal(0, 0.015, (4, 2)) * size
    ic = _box_sdf(u + 0.15 * size - jitter[0, 0], v - jitter[0, 1], size * 0.14, size * 0.14, 1)
    res1 = _box_sdf(u - 0.22 * size - jitter[1, 0], v + 0.22 * size, size * 0.09, size * 0.035, 2)
    res2 = _box_sdf(u - 0.22 * size - jitter[2, 0], v - 0.2 * size, size * 0.09, size * 0.035, 2)
    cap = np.hypot(u - 0.25 * size - jitter[3, 0], v - jitter[3, 1]) - size * 0.07
    for sdf, colour in (
        (ic, (0.1, 0.1, 0.11)),
        (res1, (0.55, 0.42, 0.3)),
        (res2, (0.3, 0.38, 0.6)),
        (cap, (0.75, 0.72, 0.68)),
    ):
        image = _mix(image, _jitter_colour(rng, colour, 0.05), _coverage(sdf))
    parts = np.minimum.reduce([ic, res1, res2, cap])
    return Scene(np.clip(image, 0, 1), board, parts < 0)


def _candle(rng, size: int) -> Scene:
    """Four white candles, seen from above, each with a dark wick."""
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.12, 0.1, 0.1))
    image, shapes = bg.copy(), []
    for cx, cy in ((0.28, 0.28), (0.72, 0.28), (0.28, 0.72), (0.72, 0.72)):
        x, y = (np.array([cx, cy]) + rng.normal(0, 0.015, 2)) * size
        r = size * 0.19 * rng.uniform(0.96, 1.04)
        d = np.hypot(xx - x, yy - y)
        wax = _jitter_colour(rng, (0.93, 0.9, 0.84), 0.02) * (1 - 0.25 * (d / r) ** 2)[..., None]
        image = image * (1 - _coverage(d - r)[..., None]) + wax * _coverage(d - r)[..., None]
        image = _mix(image, (0.15, 0.12, 0.1), _coverage(d - size * 0.018))
        shapes.append(d - r)
    return Scene(np.clip(image, 0, 1), bg, np.minimum.reduce(shapes) < 0)


def _capsules(rng, size: int) -> Scene:
    """A loose group of five green capsules at random places and angles."""
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.88, 0.88, 0.86))
    image, shapes = bg.copy(), []
    centres = [(0.3, 0.25), (0.7, 0.25), (0.5, 0.5), (0.3, 0.75), (0.7, 0.75)]
    for cx, cy in centres:
        x, y = (np.array([cx, cy]) + rng.normal(0, 0.03, 2)) * size
        u, v = _rotate(xx, yy, x, y, rng.uniform(0, np.pi))
        radius = size * 0.06
        shape = _box_sdf(u, v, size * 0.14, radius, radius)
        shading = (1 - 0.35 * np.clip(v / radius, -1, 1) ** 2)[..., None]
        colour = _jitter_colour(rng, (0.2, 0.55, 0.3), 0.05) * shading
        image = image * (1 - _coverage(shape)[..., None]) + colour * _coverage(shape)[..., None]
        shapes.append(shape)
    return Scene(np.clip(image, 0, 1), bg, np.minimum.reduce(shapes) < 0)


def _macaroni(rng, size: int) -> Scene:
    """Four ring-shaped pasta pieces on a textured mat."""
    xx, yy = _grid(size)
    mat = _background(rng, size, (0.35, 0.3, 0.28)) * (1 + 0.06 * _noise(rng, size, 1.2))[..., None]
    image, shapes = mat.copy(), []
    for cx, cy in ((0.28, 0.3), (0.72, 0.28), (0.3, 0.72), (0.7, 0.7)):
        x, y = (np.array([cx, cy]) + rng.normal(0, 0.02, 2)) * size
        r_out = size * 0.15 * rng.uniform(0.95, 1.05)
        d = np.hypot(xx - x, yy - y)
        ring = np.maximum(d - r_out, r_out * 0.5 - d)
        colour = _jitter_colour(rng, (0.93, 0.8, 0.5), 0.04)
        pasta = colour * (1 + 0.05 * _noise(rng, size, 0.8))[..., None]
        image = image * (1 - _coverage(ring)[..., None]) + pasta * _coverage(ring)[..., None]
        shapes.append(ring)
    return Scene(np.clip(image, 0, 1), np.clip(mat, 0, 1), np.minimum.reduce(shapes) < 0)


RENDER: dict[str, Callable[[np.random.Generator, int], Scene]] = {
    "wood": _wood,
    "carpet": _carpet,
    "grid": _grid_texture,
    "washer": _washer,
    "capsule": _capsule,
    "chip": _chip,
    "pcb": _pcb,
    "candle": _candle,
    "capsules": _capsules,
    "macaroni": _macaroni,
}


# ----------------------------------------------------------------------------- defects


def _defect_centre(rng, scene: Scene, size: int, margin: float) -> tuple[float, float]:
    """A random point on the object (objects) or away from the border (textures)."""
    if scene.support is not None:
        ys, xs = np.nonzero(scene.support)
        i = rng.integers(len(xs))
        return xs[i] + 0.5, ys[i] + 0.5
    return tuple(rng.uniform(margin, size - margin, 2))


def _defect_radius(rng, size: int) -> float:
    """Log-uniform from about 2 % to 12 % of the image: small defects are common."""
    return float(size * np.exp(rng.uniform(np.log(0.02), np.log(0.12))))


def _scratch(rng, scene, size):
    xx, yy = _grid(size)
    cx, cy = _defect_centre(rng, scene, size, size * 0.15)
    length = _defect_radius(rng, size) * rng.uniform(2.5, 4)
    angle = rng.uniform(0, np.pi)
    bend = rng.normal(0, 0.25) * length
    t = np.linspace(-0.5, 0.5, max(8, int(length * 2)))
    px = cx + np.cos(angle) * t * length - np.sin(angle) * bend * (0.25 - t**2)
    py = cy + np.sin(angle) * t * length + np.cos(angle) * bend * (0.25 - t**2)
    width = rng.uniform(1.0, 2.5) * size / 128
    dist = np.min(np.hypot(xx[..., None] - px, yy[..., None] - py), axis=-1)
    sdf = dist - width / 2
    tone = 1.0 if rng.random() < 0.5 else 0.05
    strength = rng.uniform(0.45, 0.8)
    alpha = _coverage(sdf) * strength
    if scene.support is not None:
        alpha = alpha * scene.support
    return _mix(scene.image, tone, alpha), alpha > 0.5 * strength


def _hole(rng, scene, size):
    xx, yy = _grid(size)
    cx, cy = _defect_centre(rng, scene, size, size * 0.1)
    sdf = _blob_sdf(rng, xx, yy, cx, cy, _defect_radius(rng, size))
    alpha = _coverage(sdf)
    if scene.support is not None:  # a missing part shows the background
        alpha = alpha * scene.support
    image = scene.image * (1 - alpha[..., None]) + scene.background * alpha[..., None]
    return image, alpha > 0.5


def _stain(rng, scene, size):
    xx, yy = _grid(size)
    cx, cy = _defect_centre(rng, scene, size, size * 0.1)
    radius = _defect_radius(rng, size) * 1.3
    sdf = _blob_sdf(rng, xx, yy, cx, cy, radius)
    alpha = np.clip(0.5 - sdf / 2.0, 0, 1)  # a softer edge than a hole
    if scene.support is not None:
        alpha = alpha * scene.support
    tint = rng.uniform(0.1, 0.9, 3)
    strength = rng.uniform(0.3, 0.55)
    image = _mix(scene.image, tint, alpha * strength)
    return image, alpha > 0.5


def _contamination(rng, scene, size):
    xx, yy = _grid(size)
    cx, cy = _defect_centre(rng, scene, size, size * 0.1)
    radius = _defect_radius(rng, size) * 0.7
    sdf = _blob_sdf(rng, xx, yy, cx, cy, max(radius, 1.5))
    alpha = _coverage(sdf)
    speck = rng.uniform(0.0, 1.0, 3)
    texture = speck * (1 + 0.2 * _noise(rng, size, 0.8))[..., None]
    image = scene.image * (1 - alpha[..., None]) + np.clip(texture, 0, 1) * alpha[..., None]
    return image, alpha > 0.5


def _misplaced(rng, scene, size):
    """A part of the object cut out and put back shifted."""
    if scene.support is None:
        raise ValueError("misplaced defects need an object")
    xx, yy = _grid(size)
    cx, cy = _defect_centre(rng, scene, size, 0)
    half = _defect_radius(rng, size) * 1.2 + 2
    part = (_box_sdf(xx - cx, yy - cy, half, half) < 0) & scene.support
    shift = rng.uniform(0.06, 0.12) * size
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = round(shift * np.cos(angle)), round(shift * np.sin(angle))
    moved = np.roll(np.roll(part, dy, axis=0), dx, axis=1)
    moved_pixels = np.roll(np.roll(scene.image, dy, axis=0), dx, axis=1)
    image = np.where(part[..., None], scene.background, scene.image)
    image = np.where(moved[..., None], moved_pixels, image)
    changed = np.abs(image - scene.image).max(axis=-1) > 0.02
    return image, (part | moved) & changed


APPLY = {
    "scratch": _scratch,
    "hole": _hole,
    "stain": _stain,
    "contamination": _contamination,
    "misplaced": _misplaced,
}


# ----------------------------------------------------------------------------- writing


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def render_sample(
    spec: SyntheticSpec, cls: str, split: str, index: int, defect: str | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One image (uint8 RGB) and its mask (uint8 0/255, or None for normal images).

    A defect that came out empty (e.g. a scratch that missed a thin part) is drawn again
    from the same image's random stream, so every anomalous image has a non-empty mask.
    """
    class_id = CLASSES.index(cls)
    rng = np.random.default_rng([spec.seed, class_id, SPLIT_IDS[split], index])
    scene = RENDER[cls](rng, spec.image_size)
    if defect is None:
        return _to_uint8(scene.image), None
    min_pixels = max(4, spec.image_size**2 // 4096)
    for _ in range(20):
        image, mask = APPLY[defect](rng, scene, spec.image_size)
        if mask.sum() >= min_pixels:
            return _to_uint8(image), mask.astype(np.uint8) * 255
    raise SettingsError(
        f"data.synthetic.image_size {spec.image_size}: too small to draw a visible {defect} "
        f"on {cls} #{index}; use {MIN_SIZE} px or more"
    )


def test_plan(spec: SyntheticSpec, cls: str) -> list[str | None]:
    """Defect kind for each test index (None = normal), kinds in round robin."""
    kinds = DEFECTS[cls]
    n_bad = spec.test_per_class - spec.test_good
    return [None] * spec.test_good + [kinds[i % len(kinds)] for i in range(n_bad)]


def generate(spec: SyntheticSpec, out: Path) -> None:
    """Write the whole benchmark under `out` (which should be empty or absent)."""
    out = Path(out)
    for cls in spec.classes:
        for i in range(spec.train_per_class):
            image, _ = render_sample(spec, cls, "train", i, None)
            _save_png(image, out / cls / "train" / GOOD / f"{i:03d}.png")
        for i, defect in enumerate(test_plan(spec, cls)):
            image, mask = render_sample(spec, cls, "test", i, defect)
            folder = GOOD if defect is None else defect
            _save_png(image, out / cls / "test" / folder / f"{i:03d}.png")
            if mask is not None:
                _save_png(mask, out / cls / "ground_truth" / folder / f"{i:03d}{MASK_SUFFIX}.png")


def contact_sheet(root: Path, out: Path, cell: int = 128) -> None:
    """One PNG: per class a normal test image, a defective one, and its mask in red."""
    from cnc.data.layout import class_samples, discover_classes

    rows = []
    for row, cls in enumerate(discover_classes(root)):
        test = class_samples(root, cls, "test")
        normal = next(s for s in test if s.mask is None)
        defective = [s for s in test if s.mask is not None]
        bad = defective[row % len(defective)]  # vary the defect kind shown from row to row
        tiles = [
            np.asarray(Image.open(p).convert("RGB").resize((cell, cell)))
            for p in (normal.image, bad.image)
        ]
        mask = np.asarray(Image.open(bad.mask).convert("L").resize((cell, cell))) > 127
        overlay = tiles[1].copy()
        overlay[mask] = (0.4 * overlay[mask] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
        rows.append(np.concatenate([*tiles, overlay], axis=1))
    sheet = np.concatenate(rows, axis=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out, format="PNG")

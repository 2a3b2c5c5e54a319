"""Heat maps in the style of the paper's Fig. 3: image, ground truth, map overlay.

The colour scale is fixed per class from its normal test images: the median normal
pixel is the bottom of the scale and the highest normal pixel the top, so a normal
image looks calm and anything hotter than every normal pixel is drawn at full red.
Normalising each image on its own would make every normal image look anomalous.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend

from cnc.data.images import display_image
from cnc.errors import BadFileError
from cnc.evaluation.maps import ClassMaps
from cnc.io import atomic_path


def colour_scale(data: ClassMaps) -> tuple[float, float]:
    normal = data.maps[data.labels == 0]
    if normal.size == 0:
        normal = data.maps
    low, high = float(np.median(normal)), float(normal.max())
    return low, max(high, low + 1e-6)


def pick(data: ClassMaps, n_normal: int, n_anomalous: int) -> list[int]:
    """Evenly spread indices: a few normal, then a few anomalous images."""
    chosen: list[int] = []
    for label, count in ((0, n_normal), (1, n_anomalous)):
        indices = np.flatnonzero(data.labels == label)
        if indices.size and count:
            spots = np.linspace(0, indices.size - 1, min(count, indices.size)).round()
            chosen += indices[spots.astype(int)].tolist()
    return chosen


def _source(path: str, size: int) -> np.ndarray:
    try:
        return display_image(Path(path), size)
    except BadFileError:
        return np.full((size, size, 3), 128, dtype=np.uint8)  # source moved: the map alone


def class_heatmap(
    data: ClassMaps,
    scores: np.ndarray,
    out: Path,
    title: str,
    n_normal: int = 2,
    n_anomalous: int = 4,
) -> Path:
    """Image, ground truth and overlay of a few images; `scores` are their image scores."""
    low, high = colour_scale(data)
    rows = pick(data, n_normal, n_anomalous)
    fig = Figure(figsize=(6.6, 2 * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row, index in enumerate(rows):
        image = _source(str(data.paths[index]), data.maps.shape[1])
        name = "/".join(Path(str(data.paths[index])).parts[-2:])  # e.g. hole/009.png
        panels = (
            (image, None, name),
            (data.masks[index], "gray", "ground truth"),
            (image, None, f"score {scores[index]:.3g}"),
        )
        for col, (picture, cmap, label) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(picture, cmap=cmap, vmin=0, vmax=1 if cmap else None)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
        shown = axes[row, 2].imshow(data.maps[index], cmap="jet", vmin=low, vmax=high, alpha=0.5)
        bar = fig.colorbar(shown, ax=axes[row, 2], fraction=0.046)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle(
        f"{title}\nanomaly score, colour scale {low:.3g} (median normal pixel) to {high:.3g} "
        "(highest normal pixel)",
        fontsize=8,
    )
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return out

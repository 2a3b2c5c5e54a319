"""`cnc bench metrics`: our exact metrics against a straightforward reference.

The test set has MVTec AD's shape: 1725 maps at 256x256 over 15 classes with the
published per-class test counts; anomalous images carry 1-3 connected defects of
0.05 % to 8 % of the image; maps are smoothed noise plus a defect response of varying
strength, stored as float16 like the maps our inference writes.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components
from sklearn.metrics import average_precision_score, roc_auc_score

from cnc.data.registry import MVTEC_COUNTS
from cnc.evaluation.maps import image_scores_from_maps
from cnc.evaluation.metrics import METRICS, PRO_FPR_LIMIT, class_metrics

ClassData = tuple[np.ndarray, np.ndarray, np.ndarray]  # maps, masks, labels


def _defect_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        area = size * size * np.exp(rng.uniform(np.log(5e-4), np.log(0.08)))
        ratio = rng.uniform(0.3, 1.0)
        a = np.sqrt(area / (np.pi * ratio))
        b = a * ratio
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        angle = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        mask |= (u / a) ** 2 + (v / b) ** 2 <= 1
    return mask


def mvtec_like_set(seed: int = 0, size: int = 256, scale: float = 1.0) -> dict[str, ClassData]:
    """Per class: float32 maps (from float16), bool masks, int labels. `scale` shrinks counts."""
    rng = np.random.default_rng(seed)
    data = {}
    for cls, (_, n_good, n_bad) in MVTEC_COUNTS.items():
        n_good, n_bad = max(1, round(n_good * scale)), max(1, round(n_bad * scale))
        labels = np.array([0] * n_good + [1] * n_bad)
        masks = np.zeros((len(labels), size, size), dtype=bool)
        maps = np.empty((len(labels), size, size), dtype=np.float32)
        for i, label in enumerate(labels):
            if label:
                masks[i] = _defect_mask(rng, size)
            noise = rng.standard_normal((size, size)).astype(np.float32)
            signal = masks[i] * np.float32(rng.uniform(0.5, 3.0))
            maps[i] = ndimage.gaussian_filter(noise * 0.6 + signal, sigma=4)
        data[cls] = (maps.astype(np.float16).astype(np.float32), masks, labels)
    return data


def reference_aupro(maps: np.ndarray, masks: np.ndarray, limit: float = PRO_FPR_LIMIT) -> float:
    """Per-threshold PRO: at each distinct score, each region's covered fraction and the FPR."""
    thresholds = np.unique(maps)[::-1]
    background = np.sort(maps[~masks])
    fpr = 1 - np.searchsorted(background, thresholds, side="left") / background.size
    keep = min(int(np.searchsorted(fpr, limit, side="right")) + 1, thresholds.size)
    thresholds, fpr = thresholds[:keep], fpr[:keep]
    pro = np.zeros(keep)
    n_regions = 0
    for image_map, image_mask in zip(maps, masks, strict=True):
        labelled = connected_components(image_mask, connectivity=2)
        for r in range(1, labelled.max() + 1):
            region = np.sort(image_map[labelled == r])
            pro += 1 - np.searchsorted(region, thresholds, side="left") / region.size
            n_regions += 1
    pro /= n_regions
    fpr, pro = np.append(0.0, fpr), np.append(0.0, pro)
    inside = fpr <= limit
    x, y = list(fpr[inside]), list(pro[inside])
    if x[-1] < limit:  # a straight line to the first point past the limit
        j = int(inside.sum())
        y.append(pro[j - 1] + (pro[j] - pro[j - 1]) * (limit - fpr[j - 1]) / (fpr[j] - fpr[j - 1]))
        x.append(limit)
    area = sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1))
    return float(area / limit)


def reference_metrics(maps: np.ndarray, masks: np.ndarray, labels: np.ndarray) -> dict:
    scores = image_scores_from_maps(maps)
    return {
        "i_auroc": roc_auc_score(labels, scores),
        "p_auroc": roc_auc_score(masks.ravel(), maps.ravel()),
        "aupro": reference_aupro(maps, masks),
        "i_ap": average_precision_score(labels, scores),
        "p_ap": average_precision_score(masks.ravel(), maps.ravel()),
    }


@dataclass
class Measured:
    name: str
    seconds: float
    peak_mb: float
    results: dict[str, dict[str, float]]


def measure(name: str, fn: Callable, data: dict[str, ClassData]) -> Measured:
    tracemalloc.start()
    start = time.perf_counter()
    results = {cls: fn(*arrays) for cls, arrays in data.items()}
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Measured(name, seconds, peak / 2**20, results)


def run(seed: int = 0, size: int = 256, scale: float = 1.0) -> list[Measured]:
    data = mvtec_like_set(seed, size, scale)
    return [
        measure("cnc.evaluation.metrics (one packed sort)", class_metrics, data),
        measure("reference (sklearn + per-threshold PRO)", reference_metrics, data),
    ]


def max_difference(a: Measured, b: Measured) -> float:
    return max(abs(a.results[c][k] - b.results[c][k]) for c in a.results for k in METRICS)

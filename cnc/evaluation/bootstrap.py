"""Bootstrap replicates of the five metrics of one class: how far each number moves when
the test set is drawn again.

A replicate resamples the class's test images, stratified: its normal images and its
anomalous images separately, with replacement, each group keeping its count. Its metrics
are those of the resampled set with its duplicates, which are the metrics of the
original images weighted by w_i, the number of times image i was drawn. They are
computed that way, without copying a map:

- I-AUROC and I-AP exactly: the image scores are sorted once; a replicate's curves are
  cumulative sums of its weights in that order.
- P-AUROC exactly: the Mann-Whitney form of the trapezoid AUROC, a quadratic form
  w^T A w / (P_w N_w), where A[i, j] counts the pairs (defect pixel of image i,
  defect-free pixel of image j) in the right order, ties counting one half, and P_w, N_w
  are the weighted pixel counts. A is built once per class from two sorts.
- AUPRO and P-AP approximately: each image's defect pixels, defect-free pixels and
  region coverage are counted at a fixed set of thresholds (the exact curve's points at
  equal steps of recall and of the false-positive rate, denser near the top scores); a
  replicate's curves are weighted sums of those counts. AUPRO integrates them as
  cnc.evaluation.metrics does; P-AP integrates precision over recall by the trapezoid
  rule between thresholds. Both agree with the exact metrics of the duplicated test set
  to well under 0.01 points (tests/test_bootstrap.py measures it).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from cnc.evaluation.maps import image_scores_from_maps
from cnc.evaluation.metrics import (
    METRICS,
    PRO_FPR_LIMIT,
    Curves,
    ap_from_curves,
    aupro_from_curves,
    auroc_from_curves,
    image_curves,
    region_ids,
    sortable_bits,
    validate_class,
)

RECALL_STEPS = 4096  # thresholds at equal steps of the defect pixels' recall
FPR_STEPS = 6144  # ... and of the false-positive rate, per FPR_RANGE of it
FPR_RANGE = 0.5  # at least this far; further where a replicate's FPR of 0.3 (the AUPRO
# limit) lies beyond it (small test sets), at the same step
TOP_STEPS = 256  # log-spaced steps near recall and FPR 0, where the curves move fastest
EXACT_SCORES = 8192  # up to this many distinct scores, every one is a threshold
BLOCK = 8192  # rows of per-image counts held at once (memory: BLOCK x images x 8 bytes)
REPLICATE_BLOCK = 500  # replicates computed at once


def class_generator(seed: int, cls: str) -> np.random.Generator:
    """The draws of one class: the same for every run evaluated with the same seed, so
    that two runs on the same test images are compared on the same resamples."""
    return np.random.default_rng([seed, zlib.crc32(cls.encode())])


def stratified_weights(labels: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, N) draw counts: the normal and the anomalous images each resampled
    with replacement, their counts kept."""
    weights = np.zeros((replicates, labels.size), dtype=np.int64)
    for group in (np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)):
        n = group.size
        draws = rng.integers(0, n, size=(replicates, n)) + n * np.arange(replicates)[:, None]
        counts = np.bincount(draws.ravel(), minlength=replicates * n)
        weights[:, group] = counts.reshape(replicates, n)
    return weights


def prefix_counts(
    items: np.ndarray,
    n_items: int,
    positions: np.ndarray,
    weights: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """For non-decreasing positions p_k in a sequence of item ids (e.g. the images of
    sorted pixels), the count (or weight) of each id among the first p_k entries, as
    (first k, counts of shape (block, n_items)) block by block."""
    carry = np.zeros(n_items)
    start = 0
    for k0 in range(0, positions.size, BLOCK):
        pos = positions[k0 : k0 + BLOCK]
        segment = np.repeat(np.arange(pos.size), np.diff(pos, prepend=start))
        hist = np.bincount(
            segment * n_items + items[start : pos[-1]],
            weights=None if weights is None else weights[start : pos[-1]],
            minlength=pos.size * n_items,
        ).reshape(pos.size, n_items)
        counts = carry + np.cumsum(hist, axis=0)
        yield k0, counts
        carry, start = counts[-1], int(pos[-1])


def _sorted_pixels(bits: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels in ascending order of score: their score keys and image ids (one sort of
    packed 64-bit keys)."""
    keys = (bits.astype(np.uint64) << np.uint64(32)) | images.astype(np.uint64)
    keys.sort()
    return (keys >> np.uint64(32)).astype(np.uint32), (keys & np.uint64(0xFFFFFFFF)).astype(
        np.int64
    )


def _distinct(ascending: np.ndarray) -> np.ndarray:
    return ascending[np.append(True, ascending[1:] != ascending[:-1])]


def _thresholds(
    defects: np.ndarray, normals: np.ndarray, fpr_range: float
) -> tuple[np.ndarray, np.ndarray]:
    """Score keys, ascending: every threshold, and those P-AP is integrated over. Every
    distinct score where there are at most EXACT_SCORES of them (coarse or tied maps: the
    replicates' curves are then the exact ones); else the highest and the lowest score
    and the scores at which recall (P-AP) and FPR (AUPRO) pass equal steps, log-spaced
    near 0."""

    def at_levels(ascending: np.ndarray, steps: int, top: float) -> np.ndarray:
        n = ascending.size
        levels = np.concatenate(
            (np.linspace(0, top, steps + 1)[1:], np.geomspace(1 / n, top / steps, TOP_STEPS))
        )
        index = np.clip(np.ceil(levels * n).astype(np.int64) - 1, 0, n - 1)
        return ascending[::-1][index]

    defect_scores = _distinct(defects)
    if defect_scores.size > EXACT_SCORES:
        defect_scores = np.unique(at_levels(defects, RECALL_STEPS, 1.0))
    every = _distinct(normals)
    if every.size <= EXACT_SCORES:  # else the union is larger still
        every = np.union1d(every, defect_scores)
    if every.size > EXACT_SCORES:
        steps = int(np.ceil(FPR_STEPS * fpr_range / FPR_RANGE))
        fpr_levels = at_levels(normals, steps, fpr_range)
        every = np.unique(np.concatenate((defect_scores, fpr_levels, [every[0]])))
    return every, defect_scores


class ClassBootstrap:
    """What every replicate of one class needs, computed once from its maps."""

    def __init__(
        self,
        maps: np.ndarray,
        masks: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> None:
        """`weights`: the replicates' draw counts, if known, so that the thresholds
        reach as far as every replicate's AUPRO needs."""
        n = labels.size
        self.labels = np.asarray(labels).astype(np.int64)
        self.scores = image_scores_from_maps(maps).astype(np.float64)
        ids, n_regions = region_ids(masks)
        masks, ids = masks.reshape(n, -1), ids.reshape(n, -1)[masks.reshape(n, -1)]
        bits = sortable_bits(maps.reshape(n, -1))
        pixel_image = np.repeat(np.arange(n), masks.shape[1]).reshape(n, -1)
        self.defect_count = masks.sum(1).astype(np.float64)
        self.normal_count = masks.shape[1] - self.defect_count
        # Defect pixels (few): sorted with their image and 1 / area of their region.
        d_bits, d_images = bits[masks], pixel_image[masks]
        region_image = np.zeros(n_regions + 1, dtype=np.int64)
        region_image[ids] = d_images  # regions never span two images
        self.region_count = np.bincount(region_image[1:], minlength=n).astype(np.float64)
        order = np.argsort(d_bits, kind="stable")
        d_bits, d_images = d_bits[order], d_images[order]
        d_share = (1.0 / np.bincount(ids)[ids])[order]
        n_bits, n_images = _sorted_pixels(bits[~masks], pixel_image[~masks])
        self.pairs = self._pairs(d_bits, d_images, n_bits, n_images, n)
        self.fpr_range = FPR_RANGE
        if weights is not None:
            self.fpr_range = self._fpr_range(n_bits, n_images, weights)
        thresholds, ap_thresholds = _thresholds(d_bits, n_bits, self.fpr_range)
        # P-AP's points (highest first), and whether each one's step holds one distinct
        # defect score: then the step rule is exact, else the trapezoid rule is closer.
        self.ap_points = np.isin(thresholds, ap_thresholds)[::-1]
        scores = _distinct(d_bits)
        above = np.searchsorted(scores, ap_thresholds[::-1], side="left")
        self.ap_single = np.diff(above, prepend=scores.size) == -1
        tp = self._at_or_above(d_bits, d_images, thresholds, n, self.defect_count)
        fp = self._at_or_above(n_bits, n_images, thresholds, n, self.normal_count)
        pro = self._at_or_above(d_bits, d_images, thresholds, n, self.region_count, d_share)
        # AUPRO's points: up to FPR_RANGE, and the lowest score (FPR 1) to close the curve.
        fpr = fp.sum(0) / n_bits.size
        on_pro = (fpr <= self.fpr_range) | (np.arange(fpr.size) == fpr.size - 1)
        # Counts in float32 (exact integers up to 2^24 pixels per threshold, and 1e-7
        # relative beyond): half the memory traffic of every replicate.
        self.tp_ap, self.fp_ap = (x[:, self.ap_points].astype(np.float32) for x in (tp, fp))
        self.fp_pro, self.pro = (x[:, on_pro].astype(np.float32) for x in (fp, pro))

    def _fpr_range(self, n_bits: np.ndarray, n_images: np.ndarray, weights: np.ndarray) -> float:
        """The original FPR (in steps of 1 %) by which every replicate's FPR has passed
        the AUPRO limit, and at least FPR_RANGE."""
        levels = np.linspace(0.01, 1.0, 100)
        index = np.clip(np.ceil(levels * n_bits.size).astype(np.int64) - 1, 0, n_bits.size - 1)
        coarse = np.unique(n_bits[::-1][index])  # ascending scores
        fp = self._at_or_above(n_bits, n_images, coarse, len(self.labels), self.normal_count)
        w = weights.astype(np.float64)
        passed = (w @ fp) / (w @ self.normal_count)[:, None] > PRO_FPR_LIMIT  # FPR rises
        first = np.where(passed.any(1), passed.argmax(1), fp.shape[1] - 1).max()
        reached = fp[:, first].sum() / n_bits.size
        return float(min(1.0, max(FPR_RANGE, reached + 0.01)))

    @staticmethod
    def _pairs(
        d_bits: np.ndarray,
        d_images: np.ndarray,
        n_bits: np.ndarray,
        n_images: np.ndarray,
        n: int,
    ) -> np.ndarray:
        """Twice A[i, j] (see the module): for the k-th defect pixel, the defect-free
        pixels of image j below it count twice and those equal to it once: the counts
        among the sorted defect-free pixels before its lower and its upper tie bound."""
        pairs = np.zeros((n, n))
        below = np.searchsorted(n_bits, d_bits, side="left")
        not_above = np.searchsorted(n_bits, d_bits, side="right")
        blocks = zip(
            prefix_counts(n_images, n, below), prefix_counts(n_images, n, not_above), strict=True
        )
        for (k0, lower), (_, upper) in blocks:
            images = d_images[k0 : k0 + len(lower)]
            order = np.argsort(images, kind="stable")
            present, first = np.unique(images[order], return_index=True)
            pairs[present] += np.add.reduceat((lower + upper)[order], first, axis=0)
        return pairs

    @staticmethod
    def _at_or_above(
        bits: np.ndarray,
        images: np.ndarray,
        thresholds: np.ndarray,
        n: int,
        totals: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, thresholds) per image: pixels (or their weights) with score >= each of
        the ascending thresholds, the highest threshold first."""
        below = np.searchsorted(bits, thresholds, side="left")
        counts = np.concatenate([c for _, c in prefix_counts(images, n, below, weights)])
        return (totals[None, :] - counts)[::-1].T.copy()

    def replicates(self, weights: np.ndarray) -> np.ndarray:
        """(B, 5) metrics (fractions, in METRICS order) of the replicates whose draw
        counts are `weights` (B, N)."""
        out = np.empty((len(weights), len(METRICS)))
        for b0 in range(0, len(weights), REPLICATE_BLOCK):
            w = weights[b0 : b0 + REPLICATE_BLOCK].astype(np.float64)
            out[b0 : b0 + len(w)] = self._block(w)
        return out

    def _block(self, w: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):  # see _metrics
            return self._metrics(w)

    def _metrics(self, w: np.ndarray) -> np.ndarray:
        """A replicate that drew only anomalous images without a defect pixel (possible
        where some masks are empty) leaves the pixel metrics undefined: NaN, left out of
        their intervals (cnc.evaluation.replicates)."""
        images = image_curves(self.scores, self.labels, w)
        positives = (w @ self.defect_count)[:, None]
        negatives = (w @ self.normal_count)[:, None]
        pairs = np.einsum("bi,ij,bj->b", w, self.pairs, w, optimize=True) / 2
        w32 = w.astype(np.float32)
        pixels = Curves(w32 @ self.tp_ap, w32 @ self.fp_ap, positives, negatives)
        pro = (w32 @ self.pro) / (w @ self.region_count)[:, None]
        coverage = Curves(None, w32 @ self.fp_pro, positives, negatives, pro)
        values = {
            "i_auroc": auroc_from_curves(images),
            "p_auroc": pairs / (positives[:, 0] * negatives[:, 0]),
            "aupro": aupro_from_curves(coverage),
            "i_ap": ap_from_curves(images),
            "p_ap": _trapezoid_ap(pixels, self.ap_single),
        }
        return np.stack([values[m] for m in METRICS], axis=1)


def _trapezoid_ap(c: Curves, single: np.ndarray) -> np.ndarray:
    """P-AP between thresholds: precision integrated over recall, by the step rule of the
    exact metric where a step holds one distinct defect score (`single`), else by the
    trapezoid rule, which follows the exact step-wise sum over the many scores between
    two thresholds closely where the step at the thresholds alone would not."""
    predicted = c.tps + c.fps
    precision = np.divide(c.tps, predicted, out=np.zeros_like(predicted), where=predicted > 0)
    gained = np.diff(c.tps, prepend=0, axis=-1)  # defect pixels (weighted) per step
    # The other end of each step: the previous point's precision where the trapezoid
    # applies and a defect pixel came before (precision 0 otherwise: undefined there).
    other = np.where(~single, np.roll(precision, 1, axis=-1), precision)
    other[..., 0] = precision[..., 0]
    other = np.where(other > 0, other, precision)
    both = np.einsum("...q,...q->...", gained, precision, dtype=np.float64)
    both += np.einsum("...q,...q->...", gained, other, dtype=np.float64)
    return both / 2 / np.asarray(c.positives)[..., 0]


def class_replicates(
    maps: np.ndarray, masks: np.ndarray, labels: np.ndarray, replicates: int, seed: int, cls: str
) -> np.ndarray:
    """(replicates, 5) bootstrap metrics of one class (fractions, METRICS order)."""
    maps, masks = np.asarray(maps, np.float32), np.asarray(masks, bool)
    labels = np.asarray(labels).astype(np.int64)
    validate_class(maps, masks, labels)
    if replicates == 0:
        return np.empty((0, len(METRICS)))
    weights = stratified_weights(labels, replicates, class_generator(seed, cls))
    return ClassBootstrap(maps, masks, labels, weights).replicates(weights)

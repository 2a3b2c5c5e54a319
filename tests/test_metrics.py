"""The five metrics against scikit-learn, an independent slow AUPRO and hand-computed cases."""

from __future__ import annotations

import re

import numpy as np
import pytest
from skimage.measure import label as connected_components
from sklearn.metrics import average_precision_score, roc_auc_score

from cnc.evaluation.metrics import (
    METRICS,
    MetricError,
    ap_from_curves,
    auroc_from_curves,
    class_metrics,
    image_curves,
)


def slow_aupro(maps, masks, limit=0.3):
    """Per threshold: binarise, label regions per image, average the overlaps; no sorting tricks."""
    background = ~masks
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fpr = (above & background).sum() / background.sum()
        overlaps = []
        for i, image_mask in enumerate(masks):
            labelled = connected_components(image_mask, connectivity=2)
            for r in range(1, labelled.max() + 1):
                region = labelled == r
                overlaps.append((above[i] & region).sum() / region.sum())
        points.append((fpr, float(np.mean(overlaps))))
    fpr, pro = np.array(points).T
    keep = fpr <= limit
    x, y = list(fpr[keep]), list(pro[keep])
    if x[-1] < limit:
        x.append(limit)
        y.append(float(np.interp(limit, fpr, pro)))  # fpr is non-decreasing
    area = sum((x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(x) - 1))
    return area / limit


def random_case(seed, n=6, size=12, tied=False):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 0] + [1] * (n - 2))
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(2, n):
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, size - 3, 2)
            h, w = rng.integers(1, 4, 2)
            masks[i, y : y + h, x : x + w] = True
    maps = rng.random((n, size, size)) + masks * rng.uniform(0.0, 0.8)
    if tied:
        maps = np.round(maps * 5) / 5  # many equal scores across classes
    return maps.astype(np.float32), masks, labels


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_against_sklearn_and_slow_aupro(seed, tied):
    maps, masks, labels = random_case(seed, tied=tied)
    got = class_metrics(maps, masks, labels)
    scores = maps.reshape(len(maps), -1).max(1)
    assert got["i_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert got["i_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert got["p_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert got["p_ap"] == pytest.approx(
        average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12
    )
    assert got["aupro"] == pytest.approx(slow_aupro(maps, masks), abs=1e-12)
    assert set(got) == set(METRICS) and all(0 <= v <= 1 for v in got.values())


def _case(normal, anomalous, mask):
    maps = np.array([[normal], [anomalous]], dtype=np.float32)
    masks = np.array([[[0] * len(normal)], [mask]], dtype=bool)
    return maps, masks, np.array([0, 1])


def test_aupro_one_region_by_hand():
    # background: 0.1 0.2 0.3 0.4 | 0.6 0.05 (6 px); region: 0.9 0.5
    # curve: (0,.5) (1/6,.5) (1/6,1) ... -> area to 0.3 = .5/6 + (.3 - 1/6)
    maps, masks, labels = _case([0.1, 0.2, 0.3, 0.4], [0.9, 0.5, 0.6, 0.05], [1, 1, 0, 0])
    expected = (0.5 / 6 + (0.3 - 1 / 6)) / 0.3
    assert class_metrics(maps, masks, labels)["aupro"] == pytest.approx(expected, abs=1e-12)


def test_aupro_two_regions_of_different_sizes_by_hand():
    # regions: A = 1 px (0.8), B = 3 px (0.9, 0.2, 0.7); 12 background px
    # PRO: .9 -> 1/6, .8 -> 2/3, .7 -> 5/6 (FPR 0); .3 -> FPR 1/12; .2 -> PRO 1
    maps, masks, labels = _case(
        [0.05] * 8, [0.8, 0.1, 0.9, 0.2, 0.7, 0.3, 0.0, 0.0], [1, 0, 1, 1, 1, 0, 0, 0]
    )
    expected = (5 / 6 * 1 / 12 + (0.3 - 1 / 12)) / 0.3
    assert class_metrics(maps, masks, labels)["aupro"] == pytest.approx(expected, abs=1e-12)


def test_aupro_counts_a_false_positive_on_a_normal_image():
    # the normal image's 0.9 pixel costs FPR 1/6 before any defect pixel is found
    maps, masks, labels = _case([0.9, 0.1, 0.1, 0.1], [0.6, 0.5, 0.1, 0.1], [1, 1, 0, 0])
    expected = (0.3 - 1 / 6) / 0.3
    assert class_metrics(maps, masks, labels)["aupro"] == pytest.approx(expected, abs=1e-12)
    # left out of the FPR (a common bug) the value would be (0.3 - 0) / 0.3 = 1
    assert expected < 0.5


def test_aupro_interpolates_at_the_limit_and_groups_ties():
    # FPR jumps 0.2 -> 0.4 while PRO jumps 0 -> 1 (a tie of region and background at 0.5)
    maps, masks, labels = _case([0.9, 0.1, 0.1], [0.5, 0.5, 0.1], [1, 0, 0])
    expected = 0.5 * 0.1 * 0.5 / 0.3  # triangle from FPR 0.2 to 0.3 reaching PRO 0.5
    assert class_metrics(maps, masks, labels)["aupro"] == pytest.approx(expected, abs=1e-12)


def test_eight_connectivity_joins_diagonal_pixels():
    # (0,0) touches (1,1) only diagonally: one region of 3 px under 8-connectivity,
    # regions of 1 and 2 px under 4-connectivity. Only (0,0) scores above the background.
    maps = np.zeros((2, 3, 3), np.float32)
    masks = np.zeros((2, 3, 3), bool)
    masks[1, 0, 0] = masks[1, 1, 1] = masks[1, 1, 2] = True
    maps[1, 0, 0] = 1.0
    aupro = class_metrics(maps, masks, np.array([0, 1]))["aupro"]
    # curve (0,0) (0,p) (1,1): area to 0.3 is 0.3 * (p + p + 0.3 (1 - p)) / 2, p = 1/3
    p = 1 / 3
    assert aupro == pytest.approx((2 * p + 0.3 * (1 - p)) / 2, abs=1e-12)
    assert aupro == pytest.approx(slow_aupro(maps, masks), abs=1e-12)


def test_invariant_under_strictly_increasing_transforms():
    maps, masks, labels = random_case(7, tied=True)
    base = class_metrics(maps, masks, labels)
    _, ranks = np.unique(maps, return_inverse=True)
    ranks = ranks.reshape(maps.shape).astype(np.float32)
    for transformed in (ranks * 7 + 3, ranks**3, -1.0 / (ranks + 1), maps * 1000):
        got = class_metrics(transformed.astype(np.float32), masks, labels)
        for key in METRICS:
            assert got[key] == pytest.approx(base[key], abs=1e-12), key


def test_a_few_hot_pixels_do_not_move_the_exact_metric():
    maps, masks, labels = random_case(3)
    base = class_metrics(maps, masks, labels)
    stretched = maps.copy()
    stretched[0, 0, 0] = 1e6  # binned implementations squeeze every other score into one bin
    other = class_metrics(stretched, masks, labels)
    assert abs(other["p_auroc"] - base["p_auroc"]) < 0.01


def test_given_image_scores_are_used():
    maps, masks, labels = random_case(1)
    perfect = labels.astype(float)
    got = class_metrics(maps, masks, labels, image_scores=perfect)
    assert got["i_auroc"] == 1.0 and got["i_ap"] == 1.0


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda m, k, y: (m[:, :5], k, y), "masks: shape"),
        (lambda m, k, y: (m[0], k[0], y), "expected shape (N, H, W)"),
        (lambda m, k, y: (m, k, y[:3]), "labels: shape"),
        (lambda m, k, y: (np.where(k, np.nan, m), k, y), "NaN"),
        (lambda m, k, y: (m, k, np.full_like(y, 2)), "0 (normal) or 1"),
        (lambda m, k, y: (m.astype(int), k, y), "floating-point"),
        (lambda m, k, y: (m[:2], k[:2], y[:2]), "no anomalous image"),
        (lambda m, k, y: (m[2:], k[2:], y[2:]), "no normal image: i_auroc and i_ap"),
        (lambda m, k, y: (m, np.zeros_like(k), y), "no defect pixel"),
        (lambda m, k, y: (m, k, np.ones_like(y) - np.eye(len(y), dtype=int)[2]), "normal images"),
    ],
)
def test_bad_input_is_rejected_with_a_reason(mutate, needle):
    maps, masks, labels = random_case(0)
    with pytest.raises(MetricError, match=re.escape(needle)):
        class_metrics(*mutate(maps, masks, labels))


def test_bench_set_has_mvtec_shape_and_reference_agrees():
    from cnc.bench.metrics import max_difference, mvtec_like_set, reference_aupro, run

    data = mvtec_like_set(seed=1, size=48, scale=0.05)
    assert len(data) == 15
    maps, masks, labels = data["bottle"]
    assert maps.shape[1:] == (48, 48) and labels.sum() >= 1 and masks[labels == 1].any()
    assert reference_aupro(maps, masks) == pytest.approx(
        class_metrics(maps, masks, labels)["aupro"], abs=1e-12
    )
    ours, reference = run(seed=1, size=48, scale=0.05)
    assert max_difference(ours, reference) < 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_image_metrics_equal_sklearns_with_many_ties(seed):
    """Evaluation computes I-AUROC and I-AP itself (no scikit-learn import at start-up)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    labels[:2] = (0, 1)
    scores = np.round(rng.random(80) * 4) / 4 + 0.2 * labels * rng.integers(0, 2, 80)
    scores = scores.astype(np.float32) - 0.5  # negative scores and -0.0 == 0.0 too
    curves = image_curves(scores, labels)
    assert auroc_from_curves(curves) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert ap_from_curves(curves) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def test_evaluation_does_not_import_scikit_learn_or_pandas():
    import subprocess
    import sys

    heavy = "{'sklearn', 'pandas', 'matplotlib', 'torch'}"
    probe = f"import sys, cnc.evaluation.evaluate; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr

"""Metrics per defect type: each type of a class against the class's normal images.

For a class and one of its defect types (a test folder other than "good"): the number of
images of that type, I-AUROC of the normal images against that type's, and P-AUROC,
AUPRO and P-AP over the pixels of the normal images and that type's images. A type whose
masks hold no defect pixel has no pixel metrics (None).
"""

from __future__ import annotations

from cnc.data.layout import GOOD
from cnc.evaluation.maps import ClassMaps, image_scores_from_maps
from cnc.evaluation.metrics import auroc_from_curves, class_metrics, image_curves

DEFECT_METRICS = ("i_auroc", "p_auroc", "aupro", "p_ap")


def defect_metrics(data: ClassMaps) -> dict[str, dict[str, float | int | None]]:
    """{defect type: {"images": n, metric: percent or None}}, types in name order; the
    maps already smoothed."""
    normal = data.defects == GOOD
    out: dict[str, dict[str, float | int | None]] = {}
    for defect in sorted(set(data.defects.tolist()) - {GOOD}):
        chosen = normal | (data.defects == defect)
        maps, masks, labels = data.maps[chosen], data.masks[chosen], data.labels[chosen]
        if masks.any():
            values = class_metrics(maps, masks, labels)
            shown = {m: 100.0 * values[m] for m in DEFECT_METRICS}
        else:
            curves = image_curves(image_scores_from_maps(maps), labels)
            shown = {m: None for m in DEFECT_METRICS}
            shown["i_auroc"] = 100.0 * float(auroc_from_curves(curves))
        out[defect] = {"images": int((data.defects == defect).sum()), **shown}
    return out

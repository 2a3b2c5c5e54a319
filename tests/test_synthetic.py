"""The synthetic benchmark: deterministic, in the MVTec layout, with real masks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import label
from typer.testing import CliRunner

from cnc.cli import app
from cnc.data.check import check_root
from cnc.data.manifest import file_hashes
from cnc.data.prepare import prepare_dataset, synthetic
from cnc.data.synthetic import (
    CLASSES,
    DEFECTS,
    MVTEC_LIKE,
    OBJECTS,
    SETS,
    TEXTURES,
    VISA_LIKE,
    SyntheticSpec,
    render_sample,
)
from cnc.errors import SettingsError

runner = CliRunner()
SMALL = SyntheticSpec(seed=3, image_size=64, train_per_class=3, test_per_class=9)


def digest(root) -> str:
    return hashlib.sha256(repr(sorted(file_hashes(root).items())).encode()).hexdigest()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "a"
    synthetic(SMALL, root)
    return root


def test_same_seed_same_bytes_other_seed_other_bytes(small_set, tmp_path):
    synthetic(SMALL, tmp_path / "b")
    assert digest(tmp_path / "b") == digest(small_set)
    other = SyntheticSpec(seed=4, image_size=64, train_per_class=3, test_per_class=9)
    synthetic(other, tmp_path / "c")
    assert digest(tmp_path / "c") != digest(small_set)


def test_layout_passes_check_with_counts(small_set):
    report = check_root(small_set)
    assert report.ok, report.problems
    assert set(report.classes) == set(MVTEC_LIKE)  # the default: MVTec AD's stand-in
    for cls, counts in report.classes.items():
        assert (counts.train, counts.test_good, counts.test_anomalous) == (3, 3, 6)
        assert set(counts.defect_types) <= set(DEFECTS[cls])
    assert (small_set / "contact_sheet.png").is_file()


def test_class_and_defect_variety():
    assert len(TEXTURES) == len(OBJECTS) == 3 and len(VISA_LIKE) == 4
    assert set(SETS["synthetic"]).isdisjoint(SETS["synthetic_visa"])  # two datasets
    kinds = {k for ks in DEFECTS.values() for k in ks}
    assert {"scratch", "hole", "stain", "contamination", "misplaced"} <= kinds


def test_masks_are_binary_non_empty_and_mark_changed_pixels(small_set):
    for mask_path in small_set.rglob("*_mask.png"):
        mask = np.asarray(Image.open(mask_path))
        assert set(np.unique(mask)) == {0, 255}, mask_path
        assert 0 < (mask == 255).mean() < 0.5, mask_path


@pytest.mark.parametrize("cls", CLASSES)
def test_defect_changes_the_image_inside_the_mask(cls):
    spec = SyntheticSpec(seed=0, image_size=96, train_per_class=1, test_per_class=30)
    for defect in DEFECTS[cls]:
        normal, _ = render_sample(spec, cls, "test", 5, None)
        bad, mask = render_sample(spec, cls, "test", 5, defect)
        change = np.abs(bad.astype(int) - normal.astype(int)).max(axis=-1)
        inside = change[mask == 255].mean()
        outside = change[mask == 0].mean()
        assert inside > 10 * max(outside, 0.1), (cls, defect, inside, outside)


def test_defect_sizes_vary_and_include_small_ones():
    spec = SyntheticSpec(seed=1, image_size=128, train_per_class=1, test_per_class=60)
    areas = []
    for cls in CLASSES:
        for i, defect in enumerate(DEFECTS[cls] * 6):
            _, mask = render_sample(spec, cls, "test", 100 + i, defect)
            areas.append((mask > 0).mean())
    areas = np.array(areas)
    assert areas.min() < 0.002  # under 33 px of 128x128: small defects exist
    assert areas.max() > 0.02
    assert np.median(areas) < 0.02


def test_images_vary_within_a_class():
    spec = SyntheticSpec(seed=0, image_size=64)
    for cls in CLASSES:
        a, _ = render_sample(spec, cls, "train", 0, None)
        b, _ = render_sample(spec, cls, "train", 1, None)
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 2, cls


def test_existing_folder_is_reused_or_protected(small_set, tmp_path):
    before = (small_set / "manifest.json").stat().st_mtime_ns
    synthetic(SMALL, small_set)  # same settings: reused as it is
    assert (small_set / "manifest.json").stat().st_mtime_ns == before

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    result = runner.invoke(app, ["data", "synthetic", str(mine), "--image-size", "64"])
    assert result.exit_code == 1
    assert "--force" in result.output and (mine / "notes.txt").read_text() == "precious"


def test_cli_generates_and_rejects_bad_settings(tmp_path):
    out = tmp_path / "s"
    args = [
        "data",
        "synthetic",
        str(out),
        "--image-size",
        "48",
        "--classes",
        "wood,chip",
        "--train-per-class",
        "2",
        "--test-per-class",
        "3",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["chip", "wood"]
    bad = runner.invoke(app, ["data", "synthetic", str(tmp_path / "t"), "--classes", "wod"])
    assert bad.exit_code == 1 and "wod" in bad.output
    assert not (tmp_path / "t").exists()


def test_the_visa_stand_in_is_its_own_dataset(tmp_path):
    """VisA's role gets other classes, multi-part scenes, and other bytes than MVTec's."""
    data = {"synthetic_visa": {"root": str(tmp_path / "v"), "image_size": 64,
                               "train_per_class": 2, "test_per_class": 6}}  # fmt: skip
    root, manifest = prepare_dataset("synthetic_visa", data)
    assert sorted(manifest["counts"]) == sorted(VISA_LIKE)
    assert check_root(root).ok
    spec = SyntheticSpec(image_size=96, classes=VISA_LIKE)
    for cls in ("candle", "capsules", "macaroni"):  # several parts: several blobs
        image, _ = render_sample(spec, cls, "train", 0, None)
        parts = label(np.abs(image.astype(int) - np.median(image, axis=(0, 1))).max(-1) > 60)[1]
        assert parts >= 4, (cls, parts)


def test_too_small_images_are_refused_by_name():
    with pytest.raises(SettingsError, match=r"data\.synthetic\.image_size: 32 is less than"):
        SyntheticSpec(image_size=32)

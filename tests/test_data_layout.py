"""The MVTec-layout reader, `cnc data check`, and the torch dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import make_mvtec, square_mask, write_png
from PIL import Image
from typer.testing import CliRunner

from cnc.cli import app
from cnc.data.check import check_root, count_mismatches
from cnc.data.dataset import AnomalyDataset, load_mask, open_split
from cnc.data.layout import LayoutError, class_samples, dataset_samples, discover_classes

runner = CliRunner()


@pytest.fixture
def tree(tmp_path):
    return make_mvtec(tmp_path / "ds", {"alpha": (3, 2, 2), "beta": (2, 1, 3)})


def test_reader_discovers_classes_counts_and_pairs_masks_by_stem(tree):
    assert discover_classes(tree) == ["alpha", "beta"]
    test = class_samples(tree, "beta", "test")
    assert [s.label for s in test] == [1, 1, 1, 0]  # "crack" sorts before "good"
    for s in test:
        if s.label:
            assert s.mask.name == f"{s.image.stem}_mask.png"
            assert s.mask.parent.name == s.defect
        else:
            assert s.mask is None
    assert len(dataset_samples(tree, "train")) == 5


def test_pairing_is_by_stem_not_by_sorted_position(tree):
    # An extra mask that sorts first would shift an index-based pairing by one.
    write_png(tree / "alpha" / "ground_truth" / "crack" / "000a_mask.png", square_mask())
    test = class_samples(tree, "alpha", "test")
    bad = [s for s in test if s.label]
    assert [(s.image.stem, s.mask.stem) for s in bad] == [("000", "000_mask"), ("001", "001_mask")]


def test_given_class_list_must_exist(tree):
    assert discover_classes(tree, ["beta"]) == ["beta"]
    with pytest.raises(LayoutError, match="gamma"):
        discover_classes(tree, ["beta", "gamma"])


def test_check_counts(tree):
    report = check_root(tree)
    assert report.ok, report.problems
    assert report.classes["beta"].train == 2
    assert report.classes["beta"].test_good == 1
    assert report.classes["beta"].test_anomalous == 3
    assert report.classes["beta"].defect_types == ["crack"]
    assert count_mismatches(report, {"alpha": (3, 2, 2), "beta": (2, 1, 3)}) == []
    mismatches = count_mismatches(report, {"alpha": (3, 2, 1), "gamma": (1, 1, 1)})
    assert any("alpha" in m and "published (3, 2, 1)" in m for m in mismatches)
    assert any("gamma" in m for m in mismatches)


def _check_fails(root, needle):
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1, result.output
    assert needle in result.output.replace("\n", "")
    return result


def test_check_missing_mask(tree):
    missing = tree / "alpha" / "ground_truth" / "crack" / "001_mask.png"
    missing.unlink()
    report = check_root(tree)
    assert any(str(tree / "alpha" / "test" / "crack" / "001.png") in p for p in report.problems)
    _check_fails(tree, "without a mask")


def test_check_mask_size_differs(tree):
    mask = tree / "beta" / "ground_truth" / "crack" / "002_mask.png"
    write_png(mask, square_mask(size=20))
    report = check_root(tree)
    assert len(report.problems) == 1 and str(mask) in report.problems[0]
    _check_fails(tree, "differs from its image")


def test_check_truncated_image(tree):
    image = tree / "alpha" / "train" / "good" / "001.png"
    write_png(image, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    report = check_root(tree)
    assert any(str(image) in p and "truncated" in p for p in report.problems)
    _check_fails(tree, "unreadable or truncated")


def test_check_unreadable_image(tree):
    image = tree / "beta" / "test" / "good" / "000.png"
    image.write_bytes(b"not a png at all")
    assert any(str(image) in p for p in check_root(tree).problems)


def test_check_empty_class(tree):
    for p in (tree / "beta" / "train" / "good").iterdir():
        p.unlink()
    _check_fails(tree, "empty class")


def test_check_missing_train_good(tree):
    import shutil

    shutil.rmtree(tree / "alpha" / "train" / "good")
    (tree / "alpha" / "train").mkdir(exist_ok=True)
    _check_fails(tree, str(tree / "alpha" / "train" / "good"))


def test_check_not_a_dataset(tmp_path):
    _check_fails(tmp_path, "no class folders")


def test_check_json(tree):
    result = runner.invoke(app, ["data", "check", str(tree), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True
    assert report["classes"]["alpha"] == {
        "train": 3,
        "test_good": 2,
        "test_anomalous": 2,
        "defect_types": ["crack"],
        "pixel_formats": ["8-bit RGB"],
    }


def test_dataset_grayscale_to_rgb_any_size_and_normalisation(tmp_path):
    root = make_mvtec(tmp_path / "ds", {"gray": (1, 1, 1)})
    image = root / "gray" / "train" / "good" / "000.png"
    write_png(image, np.full((30, 50), 200, dtype=np.uint8))  # grayscale, not square
    ds = open_split(root, "train", resolution=24, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    item = ds[0]
    assert item["image"].shape == (3, 24, 24)
    expected = (200 / 255 - 0.5) / 0.25
    assert torch.allclose(item["image"], torch.full((3, 24, 24), expected), atol=1e-5)
    assert item["label"] == 0 and not item["mask"].any()


def test_mask_resize_rule_binarises_after_resizing(tmp_path):
    # A 2x2 block in an 8x8 mask halves to a 1x1 block at 4x4; a single pixel (a quarter of
    # the resized pixel) disappears under the > 0.5 rule.
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 2:4] = 255
    mask[6, 6] = 255
    path = write_png(tmp_path / "m.png", mask)
    resized = load_mask(path, 4)
    assert resized.dtype == bool
    assert resized.sum() == 1 and resized[1, 1]
    # 0/1 and label-index masks (any non-zero value is a defect) give the same result
    for foreground in (1, 3):
        write_png(path, (mask > 0).astype(np.uint8) * foreground)
        assert np.array_equal(load_mask(path, 4), resized)


def test_dataset_item_mask_and_label(tree):
    ds = AnomalyDataset(class_samples(tree, "alpha", "test"), resolution=16, mask_size=8)
    item = ds[0]
    assert item["label"] == 1 and item["cls"] == "alpha"
    assert item["mask"].shape == (8, 8) and item["mask"].sum() == 4
    assert Image.open(item["path"]).size == (16, 16)


def test_prepare_folder_dataset_from_settings_json(tree, tmp_path):
    settings = json.dumps({"downloads": str(tmp_path), "folder": {"root": str(tree)}})
    record = tmp_path / "rec.json"
    result = runner.invoke(
        app, ["data", "prepare", "folder", "--settings", settings, "--record", str(record)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(record.read_text())["counts"]["beta"]["test_anomalous"] == 3
    assert (tree / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ('{"folder": {"root": null}}', "data.folder.root: not set"),
        ('{"downloads": "x"}', "data.folder: missing setting"),
        ("{not json", "not valid JSON"),
    ],
)
def test_prepare_bad_settings_name_the_key(settings, needle):
    result = runner.invoke(app, ["data", "prepare", "folder", "--settings", settings])
    assert result.exit_code == 1
    assert needle in result.output

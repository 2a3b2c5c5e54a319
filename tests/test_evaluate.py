"""`cnc evaluate`: metrics.json, metrics.csv and heat maps from saved maps only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import write_png
from PIL import Image
from typer.testing import CliRunner

from cnc.cli import app
from cnc.evaluation.evaluate import evaluate_run, summarise
from cnc.evaluation.heatmaps import colour_scale
from cnc.evaluation.maps import (
    ClassMaps,
    read_class_maps,
    smooth,
    write_class_maps,
    write_protocol,
)
from cnc.evaluation.metrics import METRICS, class_metrics
from cnc.settings import EvaluateSettings

runner = CliRunner()
PROTOCOL = {"map_size": 16, "mask_rule": "test"}  # what inference records


def class_maps(seed: int, tmp_path, n_good=3, n_bad=4, size=16) -> ClassMaps:
    rng = np.random.default_rng(seed)
    labels = np.array([0] * n_good + [1] * n_bad)
    masks = np.zeros((len(labels), size, size), bool)
    masks[n_good:, 4:8, 4:9] = True
    maps = rng.random(masks.shape).astype(np.float32) + masks * 0.3
    paths = []
    for i in range(len(labels)):
        paths.append(
            str(write_png(tmp_path / "img" / f"{seed}_{i}.png", np.zeros((20, 20, 3), np.uint8)))
        )
    return ClassMaps(maps, masks, labels, np.array(paths), np.where(labels == 1, "bad", "good"))


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run-a"
    for seed, cls in enumerate(["bolt", "nut"]):
        write_class_maps(run / "maps", cls, class_maps(seed, tmp_path))
    write_protocol(run / "maps", PROTOCOL)
    return run


def test_maps_round_trip_as_float16(run_dir, tmp_path):
    data = read_class_maps(run_dir / "maps" / "bolt.npz")
    original = class_maps(0, tmp_path)
    assert data.maps.dtype == np.float32
    assert np.array_equal(data.maps, original.maps.astype(np.float16).astype(np.float32))
    assert np.array_equal(data.masks, original.masks)


def test_evaluate_writes_metrics_csv_and_heatmaps(run_dir):
    result = runner.invoke(app, ["evaluate", str(run_dir)])
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["protocol"] == {**PROTOCOL, **EvaluateSettings().protocol()}
    assert saved["units"] == "percent"
    data = read_class_maps(run_dir / "maps" / "nut.npz")
    expected = class_metrics(smooth(data.maps, EvaluateSettings().sigma), data.masks, data.labels)
    for key in METRICS:
        assert saved["classes"]["nut"][key] == pytest.approx(100 * expected[key], abs=1e-9)
        both = (saved["classes"]["nut"][key] + saved["classes"]["bolt"][key]) / 2
        assert saved["mean"][key] == pytest.approx(both)
    assert saved["mtotal"] == pytest.approx(np.mean([saved["mean"][k] for k in METRICS]))
    table = pd.read_csv(run_dir / "metrics.csv", index_col="class")
    assert list(table.columns) == list(METRICS) and list(table.index) == ["bolt", "nut", "mean"]
    assert table.loc["nut", "aupro"] == pytest.approx(saved["classes"]["nut"]["aupro"])
    for cls in ("bolt", "nut"):
        with Image.open(run_dir / "heatmaps" / f"{cls}.png") as im:
            assert im.size[0] > 100 and im.size[1] > 300  # 6 rows of 3 panels
    assert sorted(p.name for p in (run_dir / "heatmaps").iterdir()) == ["bolt.png", "nut.png"]
    # Without heat maps the folder says why it is empty and how to draw them.
    assert runner.invoke(app, ["evaluate", str(run_dir), "--no-heatmaps"]).exit_code == 0
    (note,) = (run_dir / "heatmaps").iterdir()
    assert note.name == "README.txt" and f"cnc evaluate {run_dir}" in note.read_text()


def test_smoothing_is_an_evaluation_setting_over_unsmoothed_maps(run_dir, tmp_path):
    """A new sigma re-scores the saved maps; no inference runs again."""
    raw = read_class_maps(run_dir / "maps" / "bolt.npz")
    none = evaluate_run(run_dir, EvaluateSettings(sigma=0), heatmaps=False)
    expected = class_metrics(raw.maps, raw.masks, raw.labels)  # sigma 0: the maps as saved
    assert none["classes"]["bolt"]["p_auroc"] == pytest.approx(100 * expected["p_auroc"])
    result = runner.invoke(app, ["evaluate", str(run_dir), "--set", "evaluate.sigma=2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["protocol"]["smoothing_sigma"] == 2
    assert saved["classes"]["bolt"]["p_auroc"] != none["classes"]["bolt"]["p_auroc"]
    bad = runner.invoke(app, ["evaluate", str(run_dir), "--set", "model.sigma=2"])
    assert bad.exit_code == 1 and "evaluate.<key> only" in bad.output
    bad = runner.invoke(app, ["evaluate", str(run_dir), "--set", "evaluate.sigmma=2"])
    assert bad.exit_code == 1 and "evaluate.sigmma: unknown key" in bad.output


def test_evaluation_needs_no_model_and_no_images(run_dir, tmp_path):
    for p in (tmp_path / "img").iterdir():
        p.unlink()  # sources gone: metrics still computed, heat maps still drawn
    result = evaluate_run(run_dir)
    assert set(result["classes"]) == {"bolt", "nut"}


def test_summarise_is_an_unweighted_mean_over_classes():
    per_class = {"a": dict.fromkeys(METRICS, 90.0), "b": dict.fromkeys(METRICS, 70.0)}
    per_class["b"]["p_ap"] = 20.0
    mean, mtotal = summarise(per_class)
    assert mean["i_auroc"] == 80.0 and mean["p_ap"] == 55.0
    assert mtotal == pytest.approx((80 * 4 + 55) / 5)


def test_colour_scale_comes_from_normal_images_of_the_class(tmp_path):
    data = class_maps(0, tmp_path)
    low, high = colour_scale(data)
    normal = data.maps[data.labels == 0]
    assert low == pytest.approx(np.median(normal)) and high == pytest.approx(normal.max())


def test_evaluate_errors_name_the_file(run_dir, tmp_path):
    (run_dir / "maps" / "protocol.json").unlink()
    result = runner.invoke(app, ["evaluate", str(run_dir)])
    assert result.exit_code == 1 and "protocol.json" in result.output

    empty = tmp_path / "empty"
    (empty / "maps").mkdir(parents=True)
    write_protocol(empty / "maps", PROTOCOL)
    result = runner.invoke(app, ["evaluate", str(empty)])
    assert result.exit_code == 1 and "no <class>.npz" in result.output

    write_protocol(run_dir / "maps", PROTOCOL)
    only_normal = class_maps(5, tmp_path, n_good=3, n_bad=0)
    write_class_maps(run_dir / "maps", "zzz", only_normal)
    result = runner.invoke(app, ["evaluate", str(run_dir)])
    assert result.exit_code == 1
    assert "zzz.npz" in result.output and "no anomalous image" in result.output
    assert not (run_dir / "metrics.json").exists()  # nothing half-written

    (run_dir / "maps" / "zzz.npz").write_bytes(b"garbage")
    result = runner.invoke(app, ["evaluate", str(run_dir)])
    assert result.exit_code == 1 and "not a readable maps file" in result.output

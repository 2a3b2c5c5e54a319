"""Bootstrap replicates against the metrics of explicitly duplicated test sets; intervals,
paired differences, seeds, per-defect-type metrics and how they are shown."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_evaluate import PROTOCOL
from test_report import fake_run
from typer.testing import CliRunner

from cnc.bench.metrics import mvtec_like_set
from cnc.cli import app
from cnc.evaluation.bootstrap import (
    FPR_RANGE,
    ClassBootstrap,
    class_generator,
    class_replicates,
    stratified_weights,
)
from cnc.evaluation.defects import DEFECT_METRICS, defect_metrics
from cnc.evaluation.evaluate import evaluate_run
from cnc.evaluation.maps import ClassMaps, read_class_maps, smooth, write_class_maps, write_protocol
from cnc.evaluation.metrics import METRICS, MetricError, class_metrics
from cnc.evaluation.replicates import (
    Replicates,
    ReplicatesError,
    check_comparable,
    interval,
    load,
    paired,
    save,
)
from cnc.report.latex import latex
from cnc.report.render import Num, Table, difference_text, markdown, tidy
from cnc.runs import BOOTSTRAP
from cnc.settings import EvaluateSettings

runner = CliRunner()
EXACT = ("i_auroc", "p_auroc", "i_ap")  # computed exactly by every replicate
APPROXIMATE = ("aupro", "p_ap")  # from counts at fixed thresholds: within 0.01 points


def duplicated(maps, masks, labels, weights) -> np.ndarray:
    chosen = np.repeat(np.arange(labels.size), weights)
    values = class_metrics(maps[chosen], masks[chosen], labels[chosen])
    return np.array([values[m] for m in METRICS])


def tied_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Small maps with many equal scores across normal and defect pixels and images."""
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 5 + [1] * 6)
    masks = np.zeros((labels.size, 24, 24), bool)
    for i in range(5, labels.size):
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, 20, 2)
            masks[i, y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = True
    maps = np.round((rng.random(masks.shape) + masks * 0.4) * 6) / 6
    return maps.astype(np.float32), masks, labels


@pytest.mark.parametrize("smoothed", [False, True])
def test_replicates_are_the_metrics_of_the_duplicated_test_sets(smoothed):
    data = mvtec_like_set(seed=3, size=96, scale=0.12)
    worst = np.zeros(len(METRICS))
    for cls in ("bottle", "cable", "screw"):
        maps, masks, labels = data[cls]
        maps = smooth(maps, 2.0) if smoothed else maps  # float32 scores, or float16 ties
        weights = stratified_weights(labels, 12, class_generator(0, cls))
        replicates = ClassBootstrap(maps, masks, labels, weights).replicates(weights)
        for w, replicate in zip(weights, replicates, strict=True):
            worst = np.maximum(worst, np.abs(replicate - duplicated(maps, masks, labels, w)))
    for i, m in enumerate(METRICS):
        assert worst[i] <= (1e-6 if m in EXACT else 1e-4), (m, worst[i])  # 1e-4: 0.01 points


def test_small_test_sets_whose_replicates_reach_the_aupro_limit_late():
    """Three normal images of very different levels: a replicate drawing the low one
    thrice reaches an FPR of 0.3 only where the original FPR is far beyond 0.5."""
    rng = np.random.default_rng(5)
    labels = np.array([0, 0, 0, 1, 1, 1])
    masks = np.zeros((6, 40, 40), bool)
    masks[3:, 10:20, 12:22] = True
    levels = np.array([0.0, 1.0, 2.0, 1.0, 1.0, 1.0])[:, None, None]
    maps = (rng.normal(0, 0.3, masks.shape) + levels + masks * 0.8).astype(np.float32)
    weights = stratified_weights(labels, 60, class_generator(0, "levels"))
    bootstrap = ClassBootstrap(maps, masks, labels, weights)
    assert bootstrap.fpr_range > FPR_RANGE  # the default would stop short
    for w, replicate in zip(weights, bootstrap.replicates(weights), strict=True):
        assert np.abs(replicate - duplicated(maps, masks, labels, w)).max() <= 1e-4


def test_ties_between_images_and_pixels_are_counted_as_the_metrics_count_them():
    for seed in range(3):
        maps, masks, labels = tied_case(seed)
        weights = stratified_weights(labels, 20, class_generator(seed, "tied"))
        replicates = ClassBootstrap(maps, masks, labels).replicates(weights)
        for w, replicate in zip(weights, replicates, strict=True):
            exact = duplicated(maps, masks, labels, w)
            assert np.abs(replicate - exact).max() <= 1e-4
            assert np.abs(replicate - exact)[[0, 1, 3]].max() <= 1e-9


def test_a_replicate_of_ones_is_the_point_estimate():
    maps, masks, labels = tied_case(7)
    once = ClassBootstrap(maps, masks, labels).replicates(np.ones((1, labels.size), int))[0]
    point = class_metrics(maps, masks, labels)
    assert np.allclose(once, [point[m] for m in METRICS], atol=1e-9)


def test_resampling_is_stratified_and_the_same_for_every_run():
    labels = np.array([0] * 7 + [1] * 4)
    weights = stratified_weights(labels, 500, class_generator(1, "wood"))
    assert (weights[:, :7].sum(1) == 7).all() and (weights[:, 7:].sum(1) == 4).all()
    assert (weights >= 0).all() and weights.std(0).min() > 0  # every image drawn 0, 1, 2... times
    again = stratified_weights(labels, 500, class_generator(1, "wood"))
    assert np.array_equal(weights, again)
    assert not np.array_equal(weights, stratified_weights(labels, 500, class_generator(1, "grid")))
    assert not np.array_equal(weights, stratified_weights(labels, 500, class_generator(2, "wood")))


def test_zero_replicates_and_bad_input():
    maps, masks, labels = tied_case(0)
    assert class_replicates(maps, masks, labels, 0, 0, "x").shape == (0, len(METRICS))
    with pytest.raises(MetricError, match="no anomalous image"):
        class_replicates(maps[:5], masks[:5], labels[:5], 10, 0, "x")


# ----------------------------------------------------------------------------- a run


def write_run(run_dir, shift: float = 0.0, seed: int = 0, classes=("wood", "grid")):
    """Saved maps of two classes, the same test images in every run: `shift` moves the
    defect response (a better or worse model), `seed` the model's own noise."""
    for k, cls in enumerate(classes):
        maps, masks, labels = tied_case(10 + k)
        noise = np.random.default_rng(seed * 100 + k).normal(0, 0.05, maps.shape)
        maps = (maps + masks * shift + noise).astype(np.float32)
        n = labels.size
        paths = np.array(
            [
                f"data/x/{cls}/test/{'good' if y == 0 else 'hole'}/{i:03d}.png"
                for i, y in enumerate(labels)
            ]
        )
        defects = np.array(["good"] * 5 + ["hole", "scratch"] * 3)[:n]
        write_class_maps(run_dir / "maps", cls, ClassMaps(maps, masks, labels, paths, defects))
    write_protocol(run_dir / "maps", PROTOCOL)


def test_metrics_json_has_95_percent_intervals_from_the_saved_replicates(tmp_path):
    run = tmp_path / "run"
    write_run(run)
    result = evaluate_run(run, EvaluateSettings(bootstrap=200, bootstrap_seed=3), heatmaps=False)
    reps = load(run / BOOTSTRAP)
    assert reps.values.shape == (2, 200, len(METRICS)) and reps.seed == 3
    data = read_class_maps(run / "maps" / "wood.npz")
    weights = stratified_weights(data.labels, 200, class_generator(3, "wood"))
    sm = smooth(data.maps, EvaluateSettings().sigma)
    first = 100 * duplicated(sm, data.masks, data.labels, weights[0])
    assert np.abs(reps.of_class("wood")[0] - first).max() <= 1e-2  # percent
    wood = result["intervals"]["classes"]["wood"]["p_auroc"]
    assert wood == pytest.approx(np.percentile(reps.of_class("wood")[:, 1], [2.5, 97.5]))
    both = (reps.of_class("wood") + reps.of_class("grid")) / 2  # classes drawn independently
    assert result["intervals"]["mean"]["aupro"] == pytest.approx(
        np.percentile(both[:, 2], [2.5, 97.5])
    )
    assert result["intervals"]["mtotal"] == pytest.approx(np.percentile(both.mean(1), [2.5, 97.5]))
    point = class_metrics(sm, data.masks, data.labels)  # point estimates stay exact
    assert result["classes"]["wood"]["aupro"] == pytest.approx(100 * point["aupro"], abs=1e-9)
    low, high = result["intervals"]["classes"]["wood"]["i_auroc"]
    assert low < high
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["protocol"]["bootstrap"]["replicates"] == 200


def test_evaluate_bootstrap_option_and_none(tmp_path):
    run = tmp_path / "run"
    write_run(run)
    result = runner.invoke(app, ["evaluate", str(run), "--no-heatmaps", "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert (" ±" in result.output or " [" in result.output) and "mTotal" in result.output
    assert load(run / BOOTSTRAP).count == 100
    result = runner.invoke(app, ["evaluate", str(run), "--no-heatmaps", "--bootstrap", "0"])
    assert result.exit_code == 0 and " ±" not in result.output
    assert json.loads((run / "metrics.json").read_text())["intervals"] is None
    assert load(run / BOOTSTRAP).count == 0
    bad = runner.invoke(app, ["evaluate", str(run), "--bootstrap", "-1"])
    assert bad.exit_code == 1 and "evaluate.bootstrap" in bad.output
    few = runner.invoke(app, ["evaluate", str(run), "--bootstrap", "1"])  # it printed ±0.0
    assert few.exit_code == 1 and "evaluate.bootstrap=1: give 0" in few.output
    assert "at least 100 replicates" in few.output


def test_paired_differences_and_p_values():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 1, 1000)
    same = paired(80.0, 80.0, 80 + shared, 80 + shared)
    assert same.value == 0 and same.low == same.high == 0 and same.p == 1.0
    better = paired(81.0, 80.0, 81 + shared + rng.normal(0, 0.1, 1000), 80 + shared)
    assert better.excludes_zero and 0.8 < better.low < 1 < better.high < 1.2
    assert better.p == pytest.approx(2 / 1001)  # no replicate on the far side of 0
    noisy = paired(80.2, 80.0, 80.2 + rng.normal(0, 1, 1000), 80 + rng.normal(0, 1, 1000))
    assert not noisy.excludes_zero and noisy.p > 0.5
    assert difference_text(better) == f"+1.0† [{better.low:+.1f}, {better.high:+.1f}] p=0.002"
    assert difference_text(paired(-0.01, 0.0, shared, shared)).startswith("+0.0 ")


def test_two_runs_are_compared_on_the_same_resamples(tmp_path):
    for name, shift in (("base", 0.0), ("better", 0.4), ("same", 0.0)):
        write_run(tmp_path / name, shift, seed=1 if name == "same" else 0)
        evaluate_run(tmp_path / name, EvaluateSettings(bootstrap=300), heatmaps=False)
    args = ["compare", *(str(tmp_path / n) for n in ("base", "better", "same"))]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    better = result.output.split("paired differences: better - base")[1].split("###")[0]
    same = result.output.split("paired differences: same - base")[1]
    mtotal = next(line for line in better.splitlines() if line.startswith("| mTotal"))
    assert "†" in mtotal and "p=0.0" in mtotal
    assert "†" not in next(line for line in same.splitlines() if line.startswith("| mTotal"))


def test_runs_on_other_test_images_are_not_paired(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b")
    data = read_class_maps(tmp_path / "b" / "maps" / "grid.npz")
    data.paths = data.paths[::-1].copy()  # other images in the same places
    write_class_maps(tmp_path / "b" / "maps", "grid", data)
    for name in ("a", "b"):
        evaluate_run(tmp_path / name, EvaluateSettings(bootstrap=100), heatmaps=False)
    result = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "different test images (class grid)" in result.output
    a, b = load(tmp_path / "a" / BOOTSTRAP), load(tmp_path / "b" / BOOTSTRAP)
    other_seed = Replicates(a.classes, a.values, a.images, seed=9)
    with pytest.raises(ReplicatesError, match=r"evaluate\.bootstrap_seed"):
        check_comparable(a, other_seed, "a", "c")
    wood = a.classes.index("wood")
    assert a.images[wood] == b.images[wood]  # the same images


def test_replicates_file_round_trip_and_errors(tmp_path):
    reps = Replicates(("a",), np.arange(10.0).reshape(1, 2, 5), ("d",), 4)
    save(tmp_path / BOOTSTRAP, reps)
    back = load(tmp_path / BOOTSTRAP)
    assert back.classes == ("a",) and back.seed == 4 and np.array_equal(back.values, reps.values)
    (tmp_path / BOOTSTRAP).write_bytes(b"nonsense")
    with pytest.raises(ReplicatesError, match=r"not a file of plain arrays.*run `cnc evaluate"):
        load(tmp_path / BOOTSTRAP)
    assert interval(np.arange(1001.0)) == pytest.approx((25.0, 975.0))
    # A replicate without a defect pixel leaves a pixel metric undefined: left out.
    assert interval(np.append(np.arange(1001.0), np.nan)) == pytest.approx((25.0, 975.0))
    assert paired(1.0, 0.0, np.array([1.0, np.nan, 2.0]), np.zeros(3)).p == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- defects


def test_each_defect_type_against_the_normal_images(tmp_path):
    maps, masks, labels = tied_case(4)
    defects = np.array(["good"] * 5 + ["hole", "cut", "hole", "cut", "stain", "stain"])
    masks[10] = False  # one stain image without a defect pixel: the type keeps one
    data = ClassMaps(maps, masks, labels, np.array(["x"] * labels.size), defects)
    result = defect_metrics(data)
    assert list(result) == ["cut", "hole", "stain"]
    chosen = np.isin(defects, ["good", "hole"])
    expected = class_metrics(maps[chosen], masks[chosen], labels[chosen])
    assert result["hole"]["images"] == 2
    for m in DEFECT_METRICS:
        assert result["hole"][m] == pytest.approx(100 * expected[m])
    masks[9] = False  # no stain pixel left: no pixel metric, I-AUROC still
    result = defect_metrics(ClassMaps(maps, masks, labels, data.paths, defects))
    assert result["stain"]["p_auroc"] is None and result["stain"]["i_auroc"] is not None


def test_old_maps_take_their_defect_types_from_the_folders(tmp_path):
    maps, masks, labels = tied_case(1)
    paths = np.array(
        [f"r/c/test/{'good' if y == 0 else 'crack'}/{i}.png" for i, y in enumerate(labels)]
    )
    path = tmp_path / "c.npz"
    np.savez_compressed(path, maps=maps.astype(np.float16), masks=masks, labels=labels, paths=paths)
    assert read_class_maps(path).defects.tolist() == ["good"] * 5 + ["crack"] * 6


def test_compare_by_defect(tmp_path):
    fake_run(tmp_path, "a", "synthetic", ["wood"])
    fake_run(tmp_path, "b", "synthetic", ["wood"])
    result = runner.invoke(
        app, ["compare", "--by-defect", str(tmp_path / "a"), str(tmp_path / "b")]
    )
    assert result.exit_code == 0, result.output
    hole = next(line for line in result.output.splitlines() if line.startswith("| wood / hole"))
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())["defects"]["wood"]["hole"]
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())["defects"]["wood"]["hole"]
    cells = hole.split(" | ")
    assert cells[1] == "3" and cells[2] == "/".join(f"{a[m]:.1f}" for m in DEFECT_METRICS)
    assert cells[4].rstrip(" |") == "/".join(
        f"{float(f'{b[m] - a[m]:.1f}'):.1f}".replace("-0.0", "0.0") for m in DEFECT_METRICS
    )


# ----------------------------------------------------------------------------- rendering


def test_intervals_sd_and_marks_in_markdown_latex_and_csv():
    n = Num(98.64, std=0.31, metric="i_auroc", mark=1, low=98.2, high=99.0)
    n.versus = paired(98.64, 97.0, np.full(5, 98.6), np.full(5, 97.0))
    zero = Num(-0.04, metric="p_ap")
    table = Table("t", "", ["row", "cell"], [("a", [[n, zero]])])
    md = markdown([table], [])
    assert "| a | **98.6**† ±0.4 (SD 0.3)/0.0 |" in md
    tex = latex([table], [], "t")
    assert "\\textbf{98.6}$^\\dagger$\\,{\\scriptsize$\\pm$0.4}\\,{\\scriptsize(SD 0.3)}/0.0" in tex
    frame = tidy([table])
    row = frame.iloc[0]
    assert (row["lower"], row["upper"], row["std"]) == (98.2, 99.0, 0.31)
    assert row["diff"] == pytest.approx(1.64) and row["p"] == pytest.approx(2 / 6)
    assert frame.iloc[1]["p"] is None

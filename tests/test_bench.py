"""`cnc bench train|decode|cache`: what they compute and print (not how fast: timings are
printed by the commands, not asserted)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from cnc.bench import train as bench
from cnc.cli import app
from cnc.params import load_params

runner = CliRunner()


def test_cache_sizes_of_the_paper_grid():
    sizes = bench.cache_sizes(load_params())
    assert len(sizes) == 4 * 4 + 1  # Fig. 4's backbones x resolutions on MVTec AD, VisA
    expected = {  # GB in float32: 3629 (VisA 8659) images x 3 taps x tokens x width x 4 B
        ("mvtec", "ViT-L-14-336", 224): 11.5,
        ("visa", "ViT-L-14-336", 224): 27.3,
        ("mvtec", "ViT-L-14", 518): 61.1,  # 512 px fitted to the patch size 14
        ("mvtec", "ViT-B-16", 512): 34.3,
        ("mvtec", "ViT-B-32", 128): 0.6,
    }
    for key, gb in expected.items():
        assert sizes[key]["float32"] == pytest.approx(gb, abs=0.05), key
        assert sizes[key]["float16"] == sizes[key]["float32"] / 2
    shown = runner.invoke(app, ["bench", "cache"])
    assert shown.exit_code == 0 and re.search(
        r"visa .*ViT-L-14-336.*224.*13\.7.*27\.3", shown.output
    )


def test_bench_train_times_each_variant_and_projects_the_paper_grid():
    shown = runner.invoke(app, ["bench", "train", "--images", "16", "--epochs", "1"])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    for variant in ("fp32, cache in memory", "bf16, cache in memory", "fp32, re-encode"):
        assert all(word in text for word in variant.split()), variant
    projection = re.search(r"the paper's grid \(43 runs\) .*: ([\d.]+) h on cpu", text)
    assert projection and float(projection.group(1)) > 0, text
    variants = len(load_params()["experiments"]["tableS1"]["variants"])
    extra = re.search(rf"Table S1 .* adds {variants} runs: ([\d.]+) h more on cpu", text)
    # each variant costs about the main run: less than the whole 43-run grid
    assert extra and 0 < float(extra.group(1)) < float(projection.group(1)), text


def test_bench_train_names_missing_params_before_timing_anything(tmp_path):
    missing = tmp_path / "params.yaml"
    shown = runner.invoke(app, ["bench", "train", "--params", str(missing)])
    assert shown.exit_code == 1 and "params.yaml: not found" in shown.output


def test_bench_decode_gives_a_rate_per_worker_count():
    rates = bench.decode_rates(images=8, size=256, resolution=64, workers=[0, 1])
    assert [count for count, _ in rates] == [0, 1]
    assert all(rate > 0 for _, rate in rates)


def test_bench_bootstrap_prints_both_ways_and_their_agreement():
    args = ["bench", "bootstrap", "--size", "48", "--scale", "0.05", "--replicates", "40"]
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    fast = re.search(r"cnc\.evaluation\.bootstrap │ ([\d.]+) │ (\d+) │ 1\.0x", text)
    naive = re.search(r"naive \(timed on 2 per class\) │ ([\d.]+) │ - │ (\d+)x slower", text)
    assert fast and naive, text
    worst = dict(re.findall(r"(i_auroc|p_auroc|aupro|i_ap|p_ap) ([\d.e+-]+)", text))
    assert set(worst) == {"i_auroc", "p_auroc", "aupro", "i_ap", "p_ap"}
    assert max(float(worst[m]) for m in ("i_auroc", "p_auroc", "i_ap")) < 1e-4  # points
    assert max(float(worst[m]) for m in ("aupro", "p_ap")) < 1e-2
    assert re.search(r"mTotal 95 % interval \[[\d.]+, [\d.]+\]", text)

"""Reports from saved metrics.json files: the paper's layout, its numbers, differences."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import zlib

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cnc import provenance
from cnc.cli import app
from cnc.code import ROOT as PROJECT
from cnc.data.registry import MVTEC_COUNTS
from cnc.evaluation.defects import DEFECT_METRICS
from cnc.evaluation.metrics import METRICS
from cnc.evaluation.replicates import Replicates, load, save
from cnc.io import sha256_file, write_json
from cnc.pipeline import experiments, grid
from cnc.report import paper
from cnc.report.build import write_reports
from cnc.report.layouts import COST_COLUMNS
from cnc.report.render import Num, mark
from cnc.runs import BOOTSTRAP, StaleResultError
from cnc.settings import MASK_RULE, EvaluateSettings

runner = CliRunner()
PARAMS = yaml.safe_load((PROJECT / "params.yaml").read_text())
MAIN = "mvtec-vitl14_336-r224-mlf-cnc-moeT5K2-s0"


def plain(text: str) -> str:
    """Markdown without the best / second-best marks."""
    return text.replace("**", "").replace("<u>", "").replace("</u>", "")


def value(run: str, cls: str, metric: str) -> float:
    """A deterministic fake metric in [50, 100)."""
    return 50 + zlib.crc32(f"{run}/{cls}/{metric}".encode()) % 5000 / 100


def fake_run(
    runs_dir,
    name: str,
    dataset: str,
    classes: list[str],
    shift: float = 0.0,
    like: str = "",
    scoring: EvaluateSettings = EvaluateSettings(),
):
    """metrics.json (values from the name, or from `like`'s; `scoring`'s protocol; the
    digest of the bootstrap.npz beside it), config.json, train_log.csv."""
    per_class = {c: {m: value(like or name, c, m) + shift for m in METRICS} for c in classes}
    mean = {m: float(np.mean([v[m] for v in per_class.values()])) for m in METRICS}
    folder = runs_dir / name
    fake_replicates(folder, name, per_class, 200 if scoring.bootstrap else 0)
    write_json(
        folder / "metrics.json",
        {
            "run": name,
            "protocol": {"map_size": 112, "mask_rule": MASK_RULE, **scoring.protocol()},
            "files": {"maps": None, "outputs": {BOOTSTRAP: sha256_file(folder / BOOTSTRAP)}},
            "classes": per_class,
            "mean": mean,
            "mtotal": float(np.mean(list(mean.values()))),
            "defects": {
                c: {
                    d: {"images": 3, **{m: value(name, f"{c}/{d}", m) for m in DEFECT_METRICS}}
                    for d in ("hole", "scratch")
                }
                for c in classes
            },
        },
    )
    write_json(folder / "config.json", {"data": {"dataset": dataset, "root": "data"}})
    cost = {k: 1.0 + zlib.crc32(f"{name}/{k}".encode()) % 100 for k in COST_COLUMNS}
    write_json(folder / "cost.json", {**cost, "device": "CPU: test", "precision": "fp32"})
    pd.DataFrame({"epoch": [1, 2], "distill": [1.0, 0.5], "total": [3.0, 2.0]}).to_csv(
        folder / "train_log.csv", index=False
    )


def fake_replicates(folder, name: str, per_class: dict, count: int = 200) -> None:
    """bootstrap.npz: each value plus a resampling noise that every run shares (the same
    resamples) and a small one of its own."""
    shared = np.random.default_rng(0).normal(0.0, 1.0, (len(per_class), count, len(METRICS)))
    own = np.random.default_rng(zlib.crc32(name.encode())).normal(0.0, 0.1, shared.shape)
    points = np.array([[v[m] for m in METRICS] for v in per_class.values()])[:, None, :]
    images = tuple(f"digest-{c}" for c in per_class)
    save(folder / BOOTSTRAP, Replicates(tuple(per_class), points + shared + own, images, 0))


def fake_grid(runs_dir, params, dataset, classes, seeds_shift=None):
    for name, point in grid.grid_points(params).items():
        shift = (seeds_shift or {}).get(name[-2:], 0.0)
        scoring = grid.evaluate_settings(params, point)  # a variant's own, for its run
        fake_run(runs_dir, name, dataset, classes, shift, scoring=scoring)


@pytest.fixture(scope="module")
def smoke_reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    fake_grid(root / "runs", PARAMS, "synthetic", ["wood", "carpet", "washer"])
    written = write_reports(PARAMS, root / "runs", root / "reports", root / "figures")
    return root, written


def test_the_html_reports_front_page_says_what_was_run_and_warns_in_bold(smoke_reports):
    root, _ = smoke_reports
    page = (root / "reports" / "report" / "all.rst").read_text()
    assert "\n**Not comparable to the paper.** These numbers come from the smoke scale" in page
    assert "shown for layout only" in page and ".. warning::" not in page
    assert "Scale **smoke**; 43 runs (1 seed(s) each)." in page and "**Figures**" in page


def test_every_table_and_figure_is_written(smoke_reports):
    root, written = smoke_reports
    for f in experiments.report_files():
        assert (root / "reports" / f).stat().st_size > 0, f
    for f in experiments.figure_files(PARAMS):
        magic = b"%PDF" if f.endswith(".pdf") else b"\x89PNG"
        assert (root / "figures" / f).read_bytes()[:4] == magic, f
    assert {f.rsplit(".", 1)[1] for f in experiments.figure_files(PARAMS)} == {"png", "pdf"}
    assert len(written) == len(experiments.report_files()) + len(experiments.figure_files(PARAMS))


def test_smoke_reports_say_they_are_not_comparable(smoke_reports):
    root, _ = smoke_reports
    for name in ("table1", "table2", "table3", "table4", "README"):
        text = (root / "reports" / f"{name}.md").read_text()
        assert "Not comparable to the paper" in text and "Scale: **smoke**" in text
        assert "synthetic" in text
    assert "% **Not comparable" in (root / "reports" / "table1.tex").read_text()


def test_each_preamble_names_its_source_and_the_papers_numbers_only_where_shown(smoke_reports):
    root, _ = smoke_reports
    table1 = (root / "reports" / "table1.md").read_text()
    assert "percentages" in table1 and "paper's numbers are shown for layout only" in table1
    cost = (root / "reports" / "table5.md").read_text()  # timings and counts; no paper column
    assert "cost.json" in cost and "percentages" not in cost and "layout only" not in cost


def test_smoke_table1_shows_our_classes_and_the_papers_means_only(smoke_reports):
    root, _ = smoke_reports
    text = (root / "reports" / "table1.md").read_text()
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert {"wood", "carpet", "washer", "Mean", "mTotal"} <= set(rows)
    assert "bottle" not in rows
    # The synthetic "wood" is not MVTec's wood: no per-class paper numbers beside it.
    assert rows["wood"].count("-/-/-/-/-") == 4
    assert "98.6/98.0/93.0/99.3/56.4" in plain(rows["Mean"])
    expected = np.mean([value(MAIN, c, "i_auroc") for c in ("wood", "carpet", "washer")])
    assert f"{expected:.1f}" in plain(rows["Mean"])


def test_paper_scale_table1_gives_per_class_differences(tmp_path):
    p = copy.deepcopy(PARAMS)
    p["scale"] = "paper"
    classes = list(MVTEC_COUNTS)
    fake_grid(tmp_path / "runs", p, "mvtec", classes)
    fake_run(tmp_path / "runs", "visa-vitl14_336-r224-mlf-cnc-moeT5K2-s0", "visa", ["pcb1"])
    write_reports(p, tmp_path / "runs", tmp_path / "reports", tmp_path / "figures")
    table = pd.read_csv(tmp_path / "reports" / "table1.csv")
    bottle = table[(table["row"] == "bottle") & (table["metric"] == "p_ap")]
    ours = bottle[bottle["column"] == "this benchmark"]["value"].item()
    assert ours == pytest.approx(value(MAIN, "bottle", "p_ap"))
    theirs = bottle[bottle["column"] == "CNC (paper)"]["value"].item()
    assert theirs == 81.8
    assert bottle[bottle["column"] == "difference"]["value"].item() == pytest.approx(ours - 81.8)
    text = (tmp_path / "reports" / "table1.md").read_text()
    assert "Not comparable" not in text and "Scale: **paper**" in text
    # VisA was evaluated on one class only: the per-class rows show what is missing.
    t3 = pd.read_csv(tmp_path / "reports" / "table3.csv")
    pcb2 = t3[(t3["row"] == "pcb2") & (t3["column"] == "this benchmark")]
    assert pcb2["value"].isna().all()


def two_seed_table1(tmp_path) -> pd.DataFrame:
    """Table 1's CSV from a fake grid of two seeds, seed 1 two points higher."""
    p = copy.deepcopy(PARAMS)
    p["seeds"] = [0, 1]
    fake_grid(tmp_path / "runs", p, "synthetic", ["wood"], seeds_shift={"s1": 2.0})
    write_reports(p, tmp_path / "runs", tmp_path / "reports", tmp_path / "figures")
    return pd.read_csv(tmp_path / "reports" / "table1.csv")


def test_seeds_give_mean_and_sd(tmp_path):
    table = two_seed_table1(tmp_path)
    wood = table[(table["row"] == "wood") & (table["column"] == "this benchmark")]
    i_auroc = wood[wood["metric"] == "i_auroc"]
    # The fake values of s0 and s1 differ by the run name's hash plus the shift.
    a = value(MAIN, "wood", "i_auroc")
    b = value(MAIN.replace("-s0", "-s1"), "wood", "i_auroc") + 2.0
    assert i_auroc["value"].item() == pytest.approx((a + b) / 2)
    assert i_auroc["std"].item() == pytest.approx(abs(a - b) / np.sqrt(2))
    text = (tmp_path / "reports" / "table1.md").read_text()
    shown = f"{i_auroc['value'].item():.1f}"  # with its interval, symmetric or not
    assert re.search(rf"{shown}( ±| \[)", text) and "(SD " in text
    assert "SD: the standard deviation over seeds" in text
    assert "interval of the seed-averaged number" in text


def test_table2_has_the_ablation_switches_and_the_papers_rows(smoke_reports):
    root, _ = smoke_reports
    lines = (root / "reports" / "table2.md").read_text().splitlines()
    row_i = next(line for line in lines if line.startswith("| i |"))
    row_vii = next(line for line in lines if line.startswith("| vii |"))
    assert row_i.count("✗") == 3 and row_vii.count("✓") == 3
    assert "95.4/95.6/90.3" in plain(row_i)
    assert "**98.6**/**98.0**/**93.0**" in row_vii  # the paper's best row, marked


def test_table2_plot_data_is_one_row_per_ablation_row_as_the_table_has_it(smoke_reports):
    """table2-means.csv (DVC's Table 2 plot): the table's means and intervals, wide."""
    root, _ = smoke_reports
    wide = pd.read_csv(root / "reports" / "table2-means.csv")
    long = pd.read_csv(root / "reports" / "table2.csv")
    assert list(wide["row"]) == ["i: none", "ii: MLF", "iii: CNC", "iv: MoE", "v: MLF+CNC",
                                 "vi: MLF+MoE", "vii: MLF+CNC+MoE"]  # fmt: skip
    for row in wide.itertuples():
        key = row.row.split(":")[0]
        ours = long[(long["row"] == key) & (long["metric"] == "mean")
                    & long["column"].str.contains("this benchmark")].iloc[0]  # fmt: skip
        assert row.mean == pytest.approx(ours["value"])
        assert (row.mean_lower, row.mean_upper) == pytest.approx((ours["lower"], ours["upper"]))
        assert row.mean == pytest.approx((row.i_auroc + row.p_auroc + row.aupro) / 3)
    assert wide.loc[6, "paper_mean"] == pytest.approx((98.6 + 98.0 + 93.0) / 3, abs=0.05)


def test_table4_marks_invalid_cells_and_gives_the_papers_grid(smoke_reports):
    root, _ = smoke_reports
    text = (root / "reports" / "table4.md").read_text()
    paper_block = text.split("### paper")[1].split("###")[0]
    t2 = next(line for line in paper_block.splitlines() if line.startswith("| T=2 |"))
    assert t2.split(" | ")[3:] == ["✗", "✗", "✗", "✗ |"]
    assert "97.4/96.7" in t2
    t6 = next(line for line in paper_block.splitlines() if line.startswith("| T=6 |"))
    assert t6.rstrip(" |").endswith("-/-")  # K = 6: the paper has no value
    summary = json.loads((root / "reports" / "summary.json").read_text())
    assert set(summary["table4"]) >= {"None", "T=5 K=2", "T=6 K=6"}
    assert summary["table1"]["mtotal"] == pytest.approx(
        json.loads((root / "runs" / MAIN / "metrics.json").read_text())["mtotal"]
    )


def test_marks_best_and_second_with_ties():
    nums = [Num(v) for v in (90.0, 95.0, 95.0, 80.0, None)]
    mark(nums)
    assert [n.mark for n in nums] == [2, 1, 1, 0, 0]


def test_a_missing_metrics_file_names_it(tmp_path):
    fake_grid(tmp_path / "runs", PARAMS, "synthetic", ["wood"])
    (tmp_path / "runs" / MAIN / "metrics.json").unlink()
    with pytest.raises(StaleResultError, match=rf"{MAIN}/metrics.json: missing"):
        write_reports(PARAMS, tmp_path / "runs", tmp_path / "r", tmp_path / "f")


# ----------------------------------------------------------------------------- paper numbers


# The paper rounds some means and truncates others (Table 2's "93.7" is 93.77), so a
# printed mean lies within 0.1 of the value recomputed from the printed rows.
PRINTED = 0.1


@pytest.mark.parametrize("table", ["table1", "table3"])
def test_the_papers_cnc_means_follow_from_its_per_class_rows(table):
    cnc = paper.method_table(table)
    rows = np.array(list(cnc["classes"].values()))
    assert rows.shape == ((15 if table == "table1" else 12), 5)
    assert np.abs(rows.mean(axis=0) - np.array(cnc["mean"])).max() < PRINTED
    assert abs(np.mean(cnc["mean"]) - cnc["mtotal"]) < PRINTED


def test_the_baselines_quoted_means_and_their_known_mismatches():
    """The baselines' rows were copied by the paper from another paper; some of their
    printed means do not follow from their rows. Exactly these do not."""
    mismatches = set()
    for table in ("table1", "table3"):
        for method in paper.BASELINES:
            m = paper.method_table(table, method)
            rows = np.array(list(m["classes"].values()))
            for i, metric in enumerate(METRICS):
                if abs(rows[:, i].mean() - m["mean"][i]) >= PRINTED:
                    mismatches.add((table, method, metric))
    assert ("table1", "UniAD", "p_auroc") in mismatches  # 92.4 from the rows, 96.8 printed
    assert not any(method == paper.PAPER_METHOD for _, method, _ in mismatches)


def test_table2_means_and_the_shared_cells_agree():
    for row in paper.numbers()["table2"]["rows"].values():
        assert abs(np.mean(row["values"]) - row["mean"]) < PRINTED
    vii = paper.ablation_row("table2", "vii")["values"]
    assert paper.method_table("table1")["mean"][:3] == vii
    assert paper.grid_cell("table4", "T=5 K=2") == vii[:2]
    assert paper.grid_cell("table4", "None") == paper.ablation_row("table2", "v")["values"][:2]


# ----------------------------------------------------------------------------- compare


def test_compare_two_runs_and_a_run_with_the_paper(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "a", "synthetic", ["wood", "grid"])
    fake_run(runs, "b", "synthetic", ["wood", "grid"], shift=1.5, like="a")
    result = runner.invoke(app, ["compare", str(runs / "a"), str(runs / "b")])
    assert result.exit_code == 0, result.output
    wood = next(line for line in result.output.splitlines() if line.startswith("| wood"))
    assert wood.rstrip(" |").endswith("1.5/1.5/1.5/1.5/1.5")
    fake_run(runs, "m", "mvtec", list(MVTEC_COUNTS))
    result = runner.invoke(app, ["compare", str(runs / "m"), "--paper", "table1"])
    assert result.exit_code == 0, result.output
    assert "| bottle |" in result.output and "Not comparable" not in result.output
    result = runner.invoke(app, ["compare", str(runs / "a"), "--paper", "table1"])
    assert "Not comparable" in result.output and "| wood |" not in result.output
    result = runner.invoke(app, ["compare", str(runs / "a")])
    assert result.exit_code == 1 and "at least two runs" in result.output
    result = runner.invoke(app, ["compare", str(runs / "zzz"), str(runs / "a")])
    assert result.exit_code == 1 and "zzz/metrics.json: missing" in result.output


def test_compare_a_table_of_the_grid_with_the_paper(tmp_path):
    p = copy.deepcopy(PARAMS)
    p["scale"] = "paper"
    p["data"]["prepare"] = ["mvtec", "visa"]
    fake_grid(tmp_path / "runs", p, "mvtec", list(MVTEC_COUNTS))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    args = ["compare", str(tmp_path / "runs"), "--table", "table2"]
    result = runner.invoke(app, [*args, "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0, result.output
    row_i = next(line for line in result.output.splitlines() if line.startswith("| i |"))
    ours = np.mean(
        [
            np.mean(
                [value("mvtec-vitl14_336-r224-nomlf-nocnc-nomoe-s0", c, m) for c in MVTEC_COUNTS]
            )
            for m in ("i_auroc", "p_auroc", "aupro")
        ]
    )
    assert row_i.rstrip(" |").endswith(f"{ours - 93.7:.1f}")  # difference of the means
    bad = runner.invoke(
        app, [*args, "--table", "table9", "--params", str(tmp_path / "params.yaml")]
    )
    assert bad.exit_code == 1 and "choose one of table1" in bad.output


# ----------------------------------------------------------------------------- the registry


def test_registry_schema_and_params_name_the_same_experiments():
    from cnc.report.figures import FIGURES
    from cnc.report.layouts import LAYOUTS
    from cnc.schema import schema

    assert list(experiments.EXPERIMENTS) == list(
        schema()["properties"]["experiments"]["properties"]
    )
    assert set(experiments.EXPERIMENTS) == set(PARAMS["experiments"])
    for e in experiments.EXPERIMENTS.values():
        assert e.layout in LAYOUTS and all(f in FIGURES for f in e.figures)


def test_a_new_table_is_one_registry_entry(tmp_path, monkeypatch):
    """Beside its params.yaml entry (and one schema line), a table is one registry entry:
    the grid, the reports, the summary, `compare --table` and dvc.yaml follow from it."""
    from cnc.pipeline import dvcfile
    from cnc.report.compare import compare_table

    p = copy.deepcopy(PARAMS)
    p["experiments"]["table5"] = {"dataset": "visa", "rows": {"i": [False] * 3, "v": [1, 1, 0]}}
    new_run = "visa-vitl14_336-r224-nomlf-nocnc-nomoe-s0"
    assert new_run not in grid.grid_points(PARAMS)
    title = "Table 5: ablation on VisA"
    entry = experiments.Experiment(title, experiments.ablation_cells, "ablation")
    monkeypatch.setitem(experiments.EXPERIMENTS, "table5", entry)
    assert new_run in grid.grid_points(p)
    fake_grid(tmp_path / "runs", p, "synthetic", ["wood", "chip"])
    written = write_reports(p, tmp_path / "runs", tmp_path / "r", tmp_path / "f")
    assert tmp_path / "r" / "table5.md" in written and "table5.tex" in experiments.report_files()
    text = (tmp_path / "r" / "table5.md").read_text()
    assert "## Table 5: ablation on VisA" in text and "| v | ✓ | ✓ | ✗ |" in plain(text)
    assert "| i | ✗ | ✗ | ✗ |" in plain(text) and "93.7" not in text  # no paper Table 5
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert set(summary["table5"]) == {"i", "v"}
    assert "## Table 5: ablation on VisA" in compare_table(p, "table5", tmp_path / "runs")
    assert f"    {new_run}:" in dvcfile.render(p)


def test_table5_sets_each_runs_cost_beside_its_score(smoke_reports):
    root, _ = smoke_reports
    text = plain((root / "reports" / "table5.md").read_text())
    assert "## Table 5: cost of the Fig. 4 and Table 4 runs" in text
    assert "| fig4: ViT-B-32 128 |" in text and "| table4: T=5 K=2 |" in text
    frame = pd.read_csv(root / "reports" / "table5.csv")
    assert len(frame) == 16 + 22  # every Fig. 4 point and every Table 4 cell
    main = frame[frame["cell"] == "table4: T=5 K=2"].iloc[0]
    saved = json.loads((root / "runs" / MAIN / "cost.json").read_text())
    assert main["gflops_inference"] == saved["gflops_inference"] and main["runs"] == MAIN
    assert (root / "figures" / "cost.png").read_bytes()[:4] == b"\x89PNG"


def test_table_s1_is_written_by_its_own_target(smoke_reports, tmp_path):
    root, _ = smoke_reports
    assert not (root / "reports" / "tableS1.md").exists()  # opt-in: not in the default
    written = write_reports(PARAMS, root / "runs", root / "reports", root / "figures", "choices")
    assert {p.name for p in written} == {"tableS1.md", "tableS1.tex", "tableS1.csv", "tableS1.html"}
    text = plain((root / "reports" / "tableS1.md").read_text())
    assert "## Table S1: sensitivity to choices the paper leaves open" in text
    assert "Not comparable" in text and "layout only" not in text  # it has no paper numbers
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    variants = PARAMS["experiments"]["tableS1"]["variants"]
    assert len(rows) == 1 + 1 + len(variants)  # the header, the reference, the variants
    assert rows[1].startswith("| reference (main configuration) |")
    assert any(r.startswith('| backbone.taps = "quarters" |') for r in rows)
    assert "Cost: Table S1 adds" in text
    result = runner.invoke(app, ["compare", str(root / "runs"), "--table", "tableS1"])
    assert result.exit_code == 0 and "Table S1" in result.output, result.output


def test_table_s1_sorts_the_choices_by_their_effect_with_paired_intervals(tmp_path):
    """A variant 3 points above the reference (on the same resamples) comes first, marked;
    one equal to it comes last, unmarked; the cost line counts the variants' runs."""
    classes = ["wood", "carpet"]
    runs = tmp_path / "runs"
    fake_grid(runs, PARAMS, "synthetic", classes)
    cells = experiments.cells(PARAMS)["tableS1"]
    reference, big, same = cells[0].runs[0], cells[3].runs[0], cells[1].runs[0]
    for i, cell in enumerate(cells[1:], start=1):  # the others: between the two
        between = 2.5 * i / len(cells)
        shift = 3.0 if cell.runs[0] == big else 0.0 if cell.runs[0] == same else between
        scoring = grid.evaluate_settings(PARAMS, cell.points[0])
        fake_run(runs, cell.runs[0], "synthetic", classes, shift, reference, scoring)
    (runs / reference / "config.json").write_text(json.dumps({"train": {"epochs": 3}}))
    write_reports(PARAMS, runs, tmp_path / "r", tmp_path / "f", "choices")
    text = (tmp_path / "r" / "tableS1.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[2].startswith(f"| {cells[3].row} |") and rows[-1].startswith(f"| {cells[1].row} |")
    difference = rows[2].split(" | ")[3]  # mTotal minus the reference's
    assert difference.startswith("+3.0†") and re.search(r"\[\+2\.\d, \+3\.\d\]", difference)
    assert "†" not in rows[-1].split(" | ")[3]
    # the sigma variant's own scoring is named, not flagged as a mix
    assert "smoothing_sigma differs only in the rows that change it" in text
    assert "do not compare" not in text
    seconds = json.loads((runs / reference / "cost.json").read_text())["seconds_per_epoch"]
    hours = len(cells[1:]) * 3 * seconds / 3600
    assert f"Table S1 adds {len(cells) - 1} runs" in text and f"about {hours:.3g} CPU hours" in text


# ----------------------------------------------------------------------------- intervals


def test_tables_2_and_4_mark_the_differences_to_the_full_model(tmp_path):
    """Row iii: the full model's numbers plus its own small resampling noise (no
    difference); row ii: 2 points better on the same resamples (a difference)."""
    classes = ["wood", "carpet"]
    fake_grid(tmp_path / "runs", PARAMS, "synthetic", classes)
    runs = {c.row: c.runs[0] for c in experiments.cells(PARAMS)["table2"]}
    fake_run(tmp_path / "runs", runs["iii"], "synthetic", classes, like=runs["vii"])
    fake_run(tmp_path / "runs", runs["ii"], "synthetic", classes, shift=2.0, like=runs["vii"])
    write_reports(PARAMS, tmp_path / "runs", tmp_path / "reports", tmp_path / "figures")
    text = (tmp_path / "reports" / "table2.md").read_text()
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    ours = lambda row: rows[row].split(" | ")[4]  # noqa: E731  the three metrics of ours
    assert ours("ii").count("†") == 3 and "†" not in ours("iii") and "†" not in ours("vii")
    assert "†: differs from the full model (row vii)" in text
    table = pd.read_csv(tmp_path / "reports" / "table2.csv")
    ii = table[(table["row"] == "ii") & (table["metric"] == "i_auroc")].iloc[0]
    assert ii["diff"] == pytest.approx(2.0) and ii["diff_lower"] > 0 and ii["p"] < 0.05
    iii = table[(table["row"] == "iii") & (table["metric"] == "i_auroc")].iloc[0]
    assert iii["diff_lower"] < 0 < iii["diff_upper"] and iii["p"] > 0.05
    vii = table[(table["row"] == "vii") & (table["metric"] == "i_auroc")].iloc[0]
    assert np.isnan(vii["p"]) and vii["lower"] < vii["value"] < vii["upper"]
    t4 = (tmp_path / "reports" / "table4.md").read_text()
    assert "†: differs from the full model (T=5, K=2)" in t4


def test_the_interval_of_several_seeds_is_that_of_their_average(tmp_path):
    table = two_seed_table1(tmp_path)
    mtotal = table[(table["row"] == "mTotal") & (table["column"] == "this benchmark")].iloc[0]
    runs = [MAIN, MAIN.replace("-s0", "-s1")]
    reps = [load(tmp_path / "runs" / r / BOOTSTRAP).mtotal() for r in runs]
    low, high = np.percentile(np.mean(reps, axis=0), [2.5, 97.5])
    assert (mtotal["lower"], mtotal["upper"]) == pytest.approx((low, high))


def test_runs_without_replicates_are_reported_without_intervals(tmp_path):
    params = {**PARAMS, "evaluate": {"bootstrap": 0}}
    fake_grid(tmp_path / "runs", params, "synthetic", ["wood"])
    assert load(tmp_path / "runs" / MAIN / BOOTSTRAP).count == 0
    write_reports(params, tmp_path / "runs", tmp_path / "reports", tmp_path / "figures")
    text = (tmp_path / "reports" / "table2.md").read_text()
    assert " ±" not in text and "†" not in text and "95 %" not in text
    assert "; no bootstrap intervals." in text


def test_the_defect_report_lists_each_type_of_the_main_run(smoke_reports):
    root, _ = smoke_reports
    table = pd.read_csv(root / "reports" / "defects-mvtec.csv")
    hole = table[(table["row"] == "wood / hole") & (table["column"] == "P-AP")]
    assert hole["value"].item() == pytest.approx(value(MAIN, "wood/hole", "p_ap"))
    text = (root / "reports" / "defects-mvtec.md").read_text()
    assert "| wood / scratch | 3 |" in text and "against the class's normal test images" in text


def test_reports_say_where_the_runs_came_from(tmp_path):
    """Each report names the code, device, data and weights of its runs (every distinct
    value, so a mixed table shows it) and summary.json keeps them per run."""
    fake_grid(tmp_path / "runs", PARAMS, "synthetic", ["wood"])
    names = grid.grid_points(PARAMS)
    for name in names:
        main = name == MAIN
        path = tmp_path / "runs" / name / "metrics.json"
        record = json.loads(path.read_text())
        train = {
            "code": {"commit": ("cd" if main else "ab") * 20, "dirty": main, "sources": "s"},
            "machine": {"device": "NVIDIA H100"},
            "dataset": {"content_sha256": "f" * 64},
            "weights": {"weights": "openai", "tensor_fingerprint": "0123"},
            "packages": {"torch": "2.14.1+cu130"},
        }
        record["provenance"] = {"train": train, "evaluate": {"code": train["code"]}}
        write_json(path, record)
    write_reports(PARAMS, tmp_path / "runs", tmp_path / "r", tmp_path / "f")
    line = next(
        x for x in (tmp_path / "r" / "table2.md").read_text().splitlines() if "Provenance" in x
    )
    assert "code ababababab, cdcdcdcdcd with uncommitted changes;" in line
    assert "device NVIDIA H100" in line and "data content sha256 ffffffffffffffff" in line
    assert "weights openai (tensors 0123)" in line and "torch 2.14.1+cu130" in line
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["provenance"]["runs"][MAIN]["code"] == ["cdcdcdcdcd with uncommitted changes"]
    assert re.fullmatch("[0-9a-f]{40}", summary["provenance"]["report"]["code"]["commit"])


def test_reports_of_runs_without_provenance_say_so(smoke_reports):
    root, _ = smoke_reports
    assert "Provenance: not recorded" in (root / "reports" / "table1.md").read_text()


def test_code_state_outside_a_git_checkout_is_the_sources_hash(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)
    provenance.code_state.cache_clear()
    try:
        state = provenance.code_state()
    finally:
        provenance.code_state.cache_clear()
    assert state["commit"] is None and state["dirty"] is None
    assert state["sources"] == provenance.code.fingerprint(("cnc",))


@pytest.mark.parametrize("name", ["table1", "table2", "table4", "table5"])
def test_latex_tables_are_floats_with_caption_label_and_a_visible_warning(smoke_reports, name):
    root, _ = smoke_reports
    tex = (root / "reports" / f"{name}.tex").read_text()
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    floats = body.count("\\begin{table*}")
    assert floats >= 1 and floats == body.count("\\end{table*}") == body.count("\\caption{")
    assert "\\caption{Table" not in body  # LaTeX numbers the floats itself
    assert "\\resizebox" not in body and "\\tiny" not in body  # never below 7 pt
    labels = re.findall(r"\\label\{(tab:[a-z0-9-]+)\}", body)
    assert len(labels) == floats == len(set(labels)) and labels[0].startswith(f"tab:{name}")
    assert body.count("\\toprule") == body.count("\\bottomrule") == floats
    assert "\\textbf{Not comparable to the paper.}" in body  # visible, not only a comment
    tables = 2 if name == "table4" else 1  # Table 4: this benchmark's grid and the paper's
    assert body.count("Not comparable") == tables  # notes once per table, under its last part
    assert "one seed per run" in tex and "seeds: 1" not in tex
    assert body.isascii()  # every symbol escaped
    assert body.count("{") == body.count("}")


def test_heatmaps_are_drawn_for_the_runs_the_evaluate_section_names():
    p = copy.deepcopy(PARAMS)
    main = experiments.heatmap_runs(p)
    assert MAIN in main and len(main) == 2  # Tables 1 and 3
    p["evaluate"]["heatmaps"] = "all"
    assert experiments.heatmap_runs(p) == sorted(grid.grid_points(p))
    p["evaluate"]["heatmaps"] = "none"
    assert experiments.heatmap_runs(p) == []


def test_every_report_names_how_its_numbers_were_scored(smoke_reports):
    root, _ = smoke_reports
    line = next(
        x for x in (root / "reports" / "table1.md").read_text().splitlines() if "Scoring" in x
    )
    assert "maps at 112 px, smoothed with a Gaussian of sigma 4.0 map pixels" in line
    assert "1000 bootstrap replicates per class" in line
    summary = json.loads((root / "reports" / "summary.json").read_text())
    assert summary["protocol"][MAIN]["smoothing_sigma"] == 4.0


def test_a_run_scored_otherwise_than_params_says_is_refused(tmp_path):
    fake_grid(tmp_path / "runs", PARAMS, "synthetic", ["wood"])
    fake_run(tmp_path / "runs", MAIN, "synthetic", ["wood"], scoring=EvaluateSettings(sigma=3.0))
    with pytest.raises(StaleResultError, match=r"smoothing_sigma 3\.0 \(expected 4\.0\)"):
        write_reports(PARAMS, tmp_path / "runs", tmp_path / "r", tmp_path / "f")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_intervals_are_shown_as_they_are():
    """A lopsided interval is shown by its bounds (AP near 0 is never "4.4 ±6.0")."""
    from cnc.report.render import _number

    assert _number(Num(12.3, low=0.5, high=41.6), "md") == "12.3 [0.5, 41.6]"
    assert _number(Num(4.4, low=1.7, high=13.6), "tex") == "4.4\\,{\\scriptsize[1.7, 13.6]}"
    assert _number(Num(98.6, low=98.2, high=99.0), "md") == "98.6 ±0.4"
    assert _number(Num(98.6, low=98.2, high=99.0), "tex") == "98.6\\,{\\scriptsize$\\pm$0.4}"
    assert _number(Num(-0.04, low=-0.3, high=0.2, brackets=True), "md") == "+0.0 [-0.3, +0.2]"


def _html_rows(page: str) -> list[list[str]]:
    """The text of every table row's cells in an HTML page (header rows included)."""
    from html.parser import HTMLParser

    rows: list[list[str]] = []

    class Cells(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append([])
            elif tag in ("td", "th"):
                rows[-1].append("")
            elif tag == "br":
                rows[-1][-1] += "\n"

        def handle_data(self, data):
            if rows and rows[-1]:
                rows[-1][-1] += data

    Cells().feed(page)
    return [[c.strip() for c in r] for r in rows]


def test_html_tables_hold_what_the_csv_holds_readably(smoke_reports):
    """The HTML tables (Snakemake's report shows them): every row of the Markdown table,
    each number of a group on its own line named by its metric, intervals as they are,
    markup escaped, the warning set apart."""
    root, _ = smoke_reports
    page = (root / "reports" / "table1.html").read_text()
    rows = _html_rows(page)
    md_rows = [r for r in (root / "reports" / "table1.md").read_text().splitlines()
               if r.startswith("| ") and not r.startswith("| class")]  # fmt: skip
    assert len(rows) - 1 == len(md_rows)  # and the header
    frame = pd.read_csv(root / "reports" / "table1.csv")
    ours = frame[(frame["row"] == "wood") & (frame["column"] == "this benchmark")]
    cell = next(r for r in rows if r[0] == "wood")[-2].split("\n")
    assert [line.split(" ")[0] for line in cell] == ["I-AUROC", "P-AUROC", "AUPRO", "I-AP",
                                                      "P-AP"]  # fmt: skip
    for line, stat in zip(cell, ours.itertuples(), strict=True):
        shown = line.split(" ", 1)[1]
        assert shown.startswith(f"{stat.value:.1f} ")
        lopsided = f"{stat.value - stat.lower:.1f}" != f"{stat.upper - stat.value:.1f}"
        assert ("[" in shown) == lopsided
    assert "class='warning'><b>Not comparable to the paper.</b>" in page
    table4 = (root / "reports" / "table4.html").read_text()
    assert "K &gt; T" in table4 and "K > T" not in table4


def test_figures_show_intervals_marks_and_one_colour_scale(tmp_path, monkeypatch):
    """The ablation bars carry error bars and a dagger per differing number; Table 4's
    panels share one colour range per metric and say how wide the cells' intervals are."""
    import cnc.report.figures as figures

    drawn = {}
    monkeypatch.setattr(figures, "_save", lambda fig, path, rect=None: drawn.__setitem__(
        path.name, fig))  # fmt: skip
    classes = ["wood", "carpet"]
    fake_grid(tmp_path / "runs", PARAMS, "synthetic", classes)
    runs = {c.row: c.runs[0] for c in experiments.cells(PARAMS)["table2"]}
    fake_run(tmp_path / "runs", runs["ii"], "synthetic", classes, shift=2.0, like=runs["vii"])
    write_reports(PARAMS, tmp_path / "runs", tmp_path / "r", tmp_path / "f")
    (bars,) = drawn["ablation.png"].axes
    assert sum(1 for t in bars.texts if t.get_text() == "†") >= 3  # row ii, three metrics
    assert len([c for c in bars.containers if getattr(c, "errorbar", None)]) == 3
    heat = drawn["table4_heatmap.png"].axes
    images = [ax.images[0] for ax in heat if ax.images]
    assert len(images) == 4 and images[0].get_clim() == images[2].get_clim()  # I-AUROC
    assert images[1].get_clim() == images[3].get_clim()  # P-AUROC: ours and the paper's
    assert "median 95 % interval" in " ".join(
        t.get_text() for t in drawn["table4_heatmap.png"].texts
    )


@pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="no pdflatex: apt-get install "
    "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended",
)
def test_every_latex_table_compiles_and_fits_the_text_width(smoke_reports, tmp_path):
    """Each generated table in a document of AAAI's text width: no error, no box wider
    than the text by more than a point, no font under 7 pt (no scaling: sizes are set)."""
    root, _ = smoke_reports
    for tex in sorted((root / "reports").glob("*.tex")):
        document = tmp_path / f"{tex.stem}-doc.tex"
        document.write_text(
            "\\documentclass[10pt]{article}\n"
            "\\usepackage[textwidth=505pt,textheight=650pt]{geometry}\n"
            "\\usepackage{booktabs, amssymb}\n"
            f"\\begin{{document}}\n\\input{{{tex}}}\n\\end{{document}}\n"
        )
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
            cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        log = (tmp_path / f"{tex.stem}-doc.log").read_text(errors="replace")
        assert done.returncode == 0, (tex.name, log[-2000:])
        over = [float(w) for w in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
        assert all(w <= 1.0 for w in over), (tex.name, over)
        sizes = set(
            re.findall(r"\\(tiny|scriptsize|footnotesize|small|normalsize)\b", tex.read_text())
        )
        assert sizes <= {"scriptsize", "footnotesize"}, (tex.name, sizes)


def test_the_preamble_says_when_paper_scale_data_is_not_the_papers():
    """At the paper scale, runs on a dataset the paper did not use are not comparable for
    that reason (not the smoke scale's); on MVTec AD nothing is said."""
    from cnc.report.layouts import preamble
    from cnc.report.results import CellResult, Stat

    paper_scale = {**PARAMS, "scale": "paper"}
    benchmarks = experiments.EXPERIMENTS["benchmarks"]

    def result(dataset: str) -> CellResult:
        return CellResult({}, {}, Stat(50.0), dataset, 1)

    text = "\n".join(preamble(paper_scale, "t", [result("mvtec"), result("btad")], benchmarks))
    assert "Trained and evaluated on btad, which the paper did not use." in text
    assert "smoke scale" not in text and "for layout only" not in text
    assert "Not comparable" not in "\n".join(preamble(paper_scale, "t", [result("mvtec")]))
    smoke = "\n".join(preamble(PARAMS, "t", [result("replica_btad")], benchmarks))
    assert "These numbers come from the smoke scale" in smoke


def test_a_latex_interval_part_names_a_metric_column_once():
    """The part of a split table that holds this benchmark's intervals: a table with one
    column per metric (the benchmarks' means) keeps its headers; a table of several
    columns of metric groups names metric and column."""
    from cnc.report.latex import _intervals
    from cnc.report.render import Num, Table

    def num(metric: str) -> Num:
        return Num(50.0, metric=metric, low=40.0, high=70.0)

    per_metric = Table("t", "", ["dataset", "I-AUROC", "mTotal"],
                       [("BTAD", [[num("i_auroc")], [num("mtotal")]])])  # fmt: skip
    assert _intervals(per_metric).header == ["dataset", "I-AUROC", "mTotal"]
    grouped = Table("t", "", ["class", "ours", "paper"],
                    [("wood", [[num("i_auroc")], [num("i_auroc")]])])  # fmt: skip
    assert _intervals(grouped).header == ["class", "I-AUROC (ours)", "I-AUROC (paper)"]

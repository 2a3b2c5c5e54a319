"""`cnc compare`: per-class and mean differences between runs, between a run and the
paper, or between a table of the grid and the paper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnc.errors import UsageError
from cnc.evaluation.defects import DEFECT_METRICS
from cnc.evaluation.metrics import METRICS
from cnc.params import DEFAULT, load_params
from cnc.pipeline import grid
from cnc.pipeline.experiments import EXPERIMENTS, cells, tables
from cnc.report import paper
from cnc.report.layouts import (
    METRIC_LABELS,
    build,
    difference,
    nums,
    preamble,
    protocol_line,
    uncertainty,
)
from cnc.report.render import DIFFERS, Num, Table, difference_text, markdown
from cnc.report.results import CellResult, cell_result, defect_results, protocol_differences
from cnc.runs import checked_metrics, reading_runs

PAPER_DATASET = {"table1": "mvtec", "table3": "visa"}


def _pick(result: CellResult, row: str) -> list[Num]:
    if row == "Mean":
        return nums(result.mean)
    if row == "mTotal":
        return [Num.of(result.mtotal, "mtotal")]
    return nums(result.classes.get(row))


def compare_runs(run_dirs: list[Path]) -> str:
    """The first run is the reference; each other run gets its values and differences,
    and, where both were bootstrapped, the paired differences with their intervals."""
    if len(run_dirs) < 2:
        raise UsageError("give at least two runs to compare (or one run and --paper)")
    results = [cell_result(d.parent, (d.name,)) for d in run_dirs]
    protocols = {str(d): r.protocols[0] for d, r in zip(run_dirs, results, strict=True)}
    differ = protocol_differences(protocols)
    if differ:
        raise UsageError(
            "the runs were scored differently, so their numbers do not compare:\n  "
            + "\n  ".join(differ)
            + "\nEvaluate them alike, e.g. `cnc evaluate RUN... --params params.yaml`"
        )
    ref = results[0]
    classes = list(dict.fromkeys(c for r in results for c in r.classes))
    header = ["class", run_dirs[0].name]
    for d in run_dirs[1:]:
        header += [d.name, f"difference ({d.name} - {run_dirs[0].name})"]
    rows = []
    for cls in [*classes, "Mean", "mTotal"]:
        cells: list = [_pick(ref, cls)]
        for r in results[1:]:
            cells += [_pick(r, cls), difference(_pick(r, cls), _pick(ref, cls))]
        rows.append((cls, cells))
    note = "Cells: " + "/".join(METRIC_LABELS[m] for m in METRICS) + " (percent)."
    tables = [Table("compare", "", header, rows, [note])]
    for d, r in zip(run_dirs[1:], results[1:], strict=True):
        tables.append(paired_table(r, ref, d.name, run_dirs[0].name))
    head = ["## Run comparison", "", protocol_line([r.protocols[0] for r in results])]
    replicates = [r.replicates.count for r in results if r.replicates is not None]
    if replicates:
        head += ["", uncertainty(1, max(replicates))]
    return markdown(tables, head)


def paired_table(result: CellResult, ref: CellResult, name: str, ref_name: str) -> Table:
    """Per class, the class means and mTotal: `name` minus `ref_name`, its 95 % paired
    bootstrap interval and p (one table; its note says when there are no replicates)."""
    title = f"paired differences: {name} - {ref_name}"
    header = ["class", *(METRIC_LABELS[m] for m in METRICS)]
    if result.replicates is None or ref.replicates is None:
        note = "No bootstrap replicates: evaluate both runs with evaluate.bootstrap > 0."
        return Table("paired", title, header, [], [note])
    result.comparable(ref)
    rows: list[tuple[str, list]] = []
    for cls in ref.classes:
        stats, refs = result.classes[cls], ref.classes[cls]
        rows.append((cls, [difference_text(stats[m].versus(refs[m])) for m in METRICS]))
    rows.append(("Mean", [difference_text(result.mean[m].versus(ref.mean[m])) for m in METRICS]))
    rows.append(
        ("mTotal", [difference_text(result.mtotal.versus(ref.mtotal)), *["" for _ in METRICS[1:]]])
    )
    note = (
        "Each cell: the difference [its 95 % paired bootstrap interval] and the two-sided "
        "bootstrap p-value; both runs scored on the same resampled test images. "
        f"{DIFFERS['md']}: the interval excludes 0."
    )
    return Table("paired", title, header, rows, [note])


def compare_by_defect(run_dirs: list[Path]) -> str:
    """Per class and defect type: each run's metrics, and each other run's difference to
    the first."""
    if len(run_dirs) < 1:
        raise UsageError("give at least one run")
    per_run = [defect_results(d.parent, (d.name,)) for d in run_dirs]
    header = ["class / defect type", "images", run_dirs[0].name]
    for d in run_dirs[1:]:
        header += [d.name, f"difference ({d.name} - {run_dirs[0].name})"]
    rows = []
    for cls, types in per_run[0].items():
        for defect, values in types.items():
            ref = nums(values, DEFECT_METRICS)
            cells: list = [str(values["images"]), ref]
            for other in per_run[1:]:
                theirs = other.get(cls, {}).get(defect)
                ours = nums(theirs, DEFECT_METRICS)
                cells += [ours, difference(ours, ref)]
            rows.append((f"{cls} / {defect}", cells))
    note = (
        "Cells: "
        + "/".join(METRIC_LABELS[m] for m in DEFECT_METRICS)
        + (" (percent): each defect type against the class's normal test images.")
    )
    return markdown([Table("defects", "", header, rows, [note])], ["## Per defect type"])


def compare_with_paper(run_dir: Path, table: str) -> str:
    """One run against the paper's CNC numbers of Table 1 or Table 3."""
    if table not in PAPER_DATASET:
        raise UsageError(f"--paper {table!r}: choose table1 (MVTec AD) or table3 (VisA)")
    result = cell_result(run_dir.parent, (run_dir.name,))
    published = paper.method_table(table)
    same = result.dataset == PAPER_DATASET[table]
    rows = []
    if same:
        for cls, values in published["classes"].items():
            ours = nums(result.classes.get(cls))
            theirs = nums(values)
            rows.append((cls, [ours, theirs, difference(ours, theirs)]))
    ours = nums(result.mean)
    theirs = nums(published["mean"])
    rows.append(("Mean", [ours, theirs, difference(ours, theirs)]))
    total = [Num.of(result.mtotal, "mtotal")]
    paper_total = [Num(published["mtotal"], metric="mtotal")]
    rows.append(("mTotal", [total, paper_total, difference(total, paper_total)]))
    head = [f"## {run_dir.name} against the paper's {table}"]
    if not same:
        head += [
            "",
            f"**Not comparable:** the run used {result.dataset or 'an unknown dataset'}, the "
            f"paper's {table} is on {PAPER_DATASET[table]}; only the means are shown.",
        ]
    header = ["class", run_dir.name, "paper (CNC)", "difference"]
    return markdown([Table("compare", "", header, rows)], head)


def compare(
    runs: list[Path],
    paper_table: str | None = None,
    table: str | None = None,
    params: str | Path = DEFAULT,
    scale: str | None = None,
    by_defect: bool = False,
) -> str:
    """`cnc compare`: a table of the grid against the paper (`table`; `runs` may name
    the runs folder), one run against the paper (`paper_table`), runs per defect type
    (`by_defect`), or runs against the first of them. Every run read is held (shared)
    while it is read, and its metrics checked to belong with its files."""
    if table is not None:
        return compare_table(load_params(params, scale), table, runs[0] if runs else None)
    with reading_runs(runs, "a comparison"):
        if by_defect:
            return compare_by_defect(runs)
        if paper_table is not None:
            if len(runs) != 1:
                raise UsageError("--paper compares exactly one run with the paper")
            return compare_with_paper(runs[0], paper_table)
        return compare_runs(runs)


def compare_table(params: dict[str, Any], name: str, runs_dir: Path | None = None) -> str:
    """One table of the registry (e.g. table2), from the grid's saved metrics (in the
    scale's runs folder by default), beside the paper's numbers, as in `cnc report`."""
    if name not in tables():
        raise UsageError(f"--table {name!r}: choose one of {', '.join(tables())}")
    runs_dir = Path(runs_dir or grid.runs_dir(params["scale"]))
    points = {p.name: p for c in cells(params)[name] for p in c.points}
    with reading_runs([runs_dir / r for r in points], "a comparison"):
        for run, point in points.items():
            checked_metrics(runs_dir / run, grid.scoring(params, point))
        built = build(params, name, runs_dir)
    experiment = EXPERIMENTS[name]
    return markdown(built.tables, preamble(params, experiment.title, built.results, experiment))

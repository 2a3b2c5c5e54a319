"""How each experiment is rendered (`Experiment.layout`): the paper's layouts of Tables
1-4 and the data of Fig. 4, this benchmark's numbers beside the paper's.

A layout turns an experiment's cells into a `Built`: its tables (Markdown and LaTeX),
the frame of its CSV, the results it read and its headline numbers for summary.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cnc import provenance
from cnc.evaluation.defects import DEFECT_METRICS
from cnc.evaluation.metrics import METRICS
from cnc.pipeline.experiments import (
    EXPERIMENTS,
    METRICS_SOURCE,
    Cell,
    Experiment,
    GridPoint,
    main_point,
)
from cnc.report import paper
from cnc.report.render import (
    DIFFERS,
    METRIC_LABELS,
    Num,
    Table,
    mark,
    mark_columns,
    mark_rows,
    tidy,
)
from cnc.report.results import (
    CellResult,
    Stat,
    cell_result,
    defect_results,
    protocol_differences,
    read_cost,
    trained_setting,
)

OURS = "this benchmark"
TABLE2_METRICS = ("i_auroc", "p_auroc", "aupro")
TABLE4_METRICS = ("i_auroc", "p_auroc")
YES, NO, NONE = "✓", "✗", "✗"


@dataclass
class Built:
    """One experiment, rendered."""

    name: str
    experiment: Experiment
    cells: list[Cell]
    tables: list[Table]  # empty for a figure's data
    results: list[CellResult]
    frame: pd.DataFrame  # its CSV
    summary: dict[str, Any]  # its headline numbers in summary.json
    plot_frame: pd.DataFrame | None = None  # its DVC plot's data, where not `frame`

    @classmethod
    def of_tables(
        cls,
        name: str,
        cells: list[Cell],
        tables: list[Table],
        results: list[CellResult],
        summary: dict[str, Any],
    ) -> Built:
        return cls(name, EXPERIMENTS[name], cells, tables, results, tidy(tables), summary)


def comparable(result: CellResult, role: str) -> bool:
    """Numbers are comparable with the paper's only on the paper's own dataset."""
    return result.dataset == role


def datasets_of(results: list[CellResult]) -> list[str]:
    """The datasets the results' runs were trained and evaluated on."""
    return sorted({r.dataset or "unknown" for r in results})


def preamble(
    params: dict[str, Any],
    title: str,
    results: list[CellResult],
    experiment: Experiment | None = None,
) -> list[str]:
    """Title, scale, data, seeds, the numbers' source and whether they compare with the
    paper's, for one experiment's report (or the index of all, for None)."""
    datasets = datasets_of(results)
    seeds = max((r.seeds for r in results), default=1)
    lines = [
        f"## {title}",
        "",
        f"Scale: **{params['scale']}**; trained and evaluated on: {', '.join(datasets)}; "
        + (f"{seeds} seeds (each number is their mean)." if seeds > 1 else "one seed per run."),
        experiment.source if experiment else METRICS_SOURCE,
    ]
    replicates = [r.replicates.count for r in results if r.replicates is not None]
    if replicates:
        lines.append(uncertainty(seeds, max(replicates)))
    lines.append(provenance_line([p for r in results for p in r.provenance]))
    if any(r.protocols for r in results):
        varied = experiment is not None and experiment.layout == "sensitivity"
        lines.append(protocol_line([p for r in results for p in r.protocols], varied))
    others = [d for d in datasets if d not in ("mvtec", "visa")]
    if params["scale"] != "paper":
        why = (
            "These numbers come from the smoke scale (synthetic data, tiny randomly "
            "initialised backbones, a few epochs). They check that the pipeline runs end to "
            "end; they say nothing about CNC."
        )
    elif others:
        why = f"Trained and evaluated on {', '.join(others)}, which the paper did not use."
    else:
        return lines
    layout = experiment is None or experiment.paper_numbers
    lines += [
        "",
        f"**Not comparable to the paper.** {why}"
        + (" The paper's numbers are shown for layout only." if layout else ""),
    ]
    return lines


def provenance_line(records: list[dict[str, Any]]) -> str:
    """Where the runs came from, each kind of fact once (several values: they differ)."""
    facts = provenance.summary(records)
    if not facts:
        return "Provenance: not recorded (runs from an older version); evaluate them again."
    return "Provenance: " + "; ".join(f"{k} {', '.join(v)}" for k, v in facts.items()) + "."


def protocol_line(protocols: list[dict[str, Any]], varied: bool = False) -> str:
    """How the numbers were scored (metrics.json's protocol), each value once; several
    values of a scoring key say the numbers do not compare, unless the table `varied`
    them on purpose (Table S1's scoring variants)."""

    def values(read: Callable[[dict[str, Any]], Any]) -> str:
        return ", ".join(str(v) for v in dict.fromkeys(read(p) for p in protocols))

    sigmas = values(lambda p: p.get("smoothing_sigma"))
    replicates = values(lambda p: (p.get("bootstrap") or {}).get("replicates"))
    resampled = (
        "no bootstrap intervals"
        if replicates == "0"
        else f"{replicates} bootstrap replicates per class"
    )
    line = (
        f"Scoring: anomaly maps at {values(lambda p: p.get('map_size'))} px, smoothed with a "
        f"Gaussian of sigma {sigmas} map pixels; image score: "
        f"{values(lambda p: p.get('image_score'))}; {resampled}."
    )
    differ = protocol_differences({str(i): p for i, p in enumerate(protocols)})
    if differ and varied:
        keys = ", ".join(d.split(":")[0] for d in differ)
        line += f" The {keys} differs only in the rows that change it."
    elif differ:
        keys = ", ".join(d.split(":")[0] for d in differ)
        line += f" **The runs were scored differently ({keys}): their numbers do not compare.**"
    return line


def uncertainty(seeds: int, replicates: int) -> str:
    """What the reports' ± and [low, high] (and SD) measure, in one sentence."""
    resampled = (
        f"its test images resampled {replicates} times (each class's normal and anomalous "
        "images separately, with replacement)"
    )
    if seeds > 1:
        return (
            "SD: the standard deviation over seeds (how much training varies); ±: half the "
            "width of the 95 % bootstrap interval of the seed-averaged number, [low, high]: "
            f"its bounds where it is lopsided, {resampled} (how much it depends on the test "
            "images)."
        )
    return (
        "±: half the width of the 95 % bootstrap interval of each number of this benchmark "
        f"([low, high]: its bounds where it is lopsided), {resampled}: how much the number "
        "depends on the test images, not on training."
    )


def nums(values: dict[str, Stat] | list[float] | None, metrics=METRICS) -> list[Num]:
    """One cell's numbers from statistics, printed values, or nothing ("-")."""
    if values is None:
        return [Num(None, metric=m) for m in metrics]
    if isinstance(values, list):
        return [Num(v, metric=m) for v, m in zip(values, metrics, strict=True)]
    return [Num.of(values[m], m) for m in metrics]


def difference(ours: list[Num], theirs: list[Num]) -> list[Num]:
    return [
        Num(None if a.value is None or b.value is None else a.value - b.value, metric=a.metric)
        for a, b in zip(ours, theirs, strict=True)
    ]


def reference_of(params: dict[str, Any], cells: list[Cell]) -> Cell | None:
    """The cell that holds the main configuration (the full model), if one does."""
    for c in cells:
        if c.points == tuple(main_point(params, p.role, p.seed) for p in c.points):
            return c
    return None


def versus(ours: list[Num], stats: list[Stat], reference: list[Stat]) -> list[Num]:
    """Attach to each number its paired difference to the reference's."""
    for n, stat, ref in zip(ours, stats, reference, strict=True):
        n.versus = stat.versus(ref)
    return ours


def paired_with(reference: CellResult | None) -> bool:
    """Whether a table's numbers carry paired differences to this reference."""
    return reference is not None and reference.replicates is not None


def differs_note(reference: str) -> str:
    return (
        f"{DIFFERS['md']}: differs from {reference}: the 95 % paired bootstrap interval of "
        "the difference (both runs scored on the same resampled test images) excludes 0; "
        "the CSV gives the difference, its interval and p."
    )


def per_class(params: dict[str, Any], name: str, cells: list[Cell], runs_dir: Path) -> Built:
    """Table 1 (MVTec AD) or Table 3 (VisA): per-class rows, Mean, mTotal."""
    (cell,) = cells
    result = cell_result(runs_dir, cell.runs)
    methods = paper.methods(name)  # none for an experiment the paper does not have
    same = comparable(result, cell.points[0].role) and bool(methods)
    header = ["class", *(f"{m} (paper)" for m in methods), OURS, "difference"]
    classes = list(paper.method_table(name)["classes"]) if same else list(result.classes)
    rows: list[tuple[str, list]] = []
    for cls in classes:
        published = [
            nums(paper.method_table(name, m)["classes"].get(cls) if same else None) for m in methods
        ]
        ours = nums(result.classes.get(cls))
        rows.append((cls, [*published, ours, difference(ours, published[-1]) if same else "-"]))
    published = [nums(paper.method_table(name, m)["mean"]) for m in methods]
    ours = nums(result.mean)
    rows.append(("Mean", [*published, ours, difference(ours, published[-1]) if same else "-"]))
    totals = [[Num(paper.method_table(name, m)["mtotal"], metric="mtotal")] for m in methods]
    ours_total = [Num.of(result.mtotal, "mtotal")]
    rows.append(
        ("mTotal", [*totals, ours_total, difference(ours_total, totals[-1]) if same else "-"])
    )
    table = Table(
        name,
        "",
        header,
        rows,
        notes=[
            "Cells: " + "/".join(METRIC_LABELS[m] for m in METRICS) + ". Bold: best, "
            "underlined: second best among the methods of the row. Difference: this "
            "benchmark minus the paper's CNC (the method the paper's tables label CND)."
            + (
                ""
                if same
                else " The paper's per-class numbers are not shown: these runs were tested "
                "on other classes than the paper's, so only its means are given, for layout."
            )
        ],
    )
    mark_rows(table, list(range(len(methods) + 1)))
    summary = {**{m: s.mean for m, s in result.mean.items()}, "mtotal": result.mtotal.mean}
    return Built.of_tables(name, cells, [table], [result], summary)


def _means(cells: list[Cell], results: list[CellResult], metrics: tuple[str, ...]) -> dict:
    """{"row column": {metric: class mean}} of every cell (the summary of a grid)."""
    return {
        f"{c.row} {c.column}".strip(): {m: r.mean[m].mean for m in metrics}
        for c, r in zip(cells, results, strict=True)
    }


def components(point: GridPoint) -> str:
    """Table 2's switches of a run as words: "MLF+CNC", "none"."""
    on = [n for n, s in zip(("MLF", "CNC", "MoE"), (point.mlf, point.constraint, point.experts),
          strict=True) if s]  # fmt: skip
    return "+".join(on) or "none"


def ablation(params: dict[str, Any], name: str, grid: list[Cell], runs_dir: Path) -> Built:
    """Table 2: one row per switch combination, three metrics and their mean."""
    results = [cell_result(runs_dir, c.runs) for c in grid]
    same = all(comparable(r, c.points[0].role) for c, r in zip(grid, results, strict=True))
    full_cell = reference_of(params, grid)
    full = results[grid.index(full_cell)] if full_cell else None

    def three(result: CellResult) -> list[Stat]:
        stats = [result.mean[m] for m in TABLE2_METRICS]
        return [*stats, Stat.average(stats)]

    rows = []
    for c, result in zip(grid, results, strict=True):
        p = c.points[0]
        published = paper.ablation_row(name, c.row)
        stats = three(result)
        numbers = [Num.of(s, m) for s, m in zip(stats, [*TABLE2_METRICS, "mean"], strict=True)]
        if full is not None and result is not full:
            result.comparable(full)
            versus(numbers, stats, three(full))
        ours, ours_mean = numbers[:-1], numbers[-1:]
        theirs = nums(published["values"] if published else None, TABLE2_METRICS)
        theirs_mean = [Num(published["mean"] if published else None, metric="mean")]
        switches = [YES if p.mlf else NO, YES if p.constraint else NO, YES if p.experts else NO]
        rows.append(
            (
                c.row,
                [
                    *switches,
                    ours,
                    ours_mean,
                    theirs,
                    theirs_mean,
                    difference(ours_mean, theirs_mean) if same else "-",
                ],
            )
        )
    perf = "/".join(METRIC_LABELS[m] for m in TABLE2_METRICS)
    header = ["", "MLF", "CNC", "MoE", f"{perf} ({OURS})", f"Mean ({OURS})"]
    header += [f"{perf} (paper)", "Mean (paper)"]
    table = Table(
        "table2",
        "",
        [*header, "difference of means"],
        rows,
        notes=[
            "Class means over the dataset's classes. Mean: of the three metrics. MoE on = "
            f"T={params['main']['experts']}, K={params['main']['top_k']}. Bold: best, "
            "underlined: second best in the column.",
            *([differs_note(f"the full model (row {full_cell.row})")] if paired_with(full) else []),
        ],
    )
    mark_columns(table, [3, 4, 5, 6])
    built = Built.of_tables(name, grid, [table], results, _means(grid, results, TABLE2_METRICS))
    records = []
    for c, (_, cells) in zip(grid, rows, strict=True):
        ours, (mean,), (paper_mean,) = cells[3], cells[4], cells[6]
        numbers = dict(zip(TABLE2_METRICS, (n.value for n in ours), strict=True))
        records.append({"row": f"{c.row}: {components(c.points[0])}", **numbers,
                        "mean": mean.value, "mean_lower": mean.low, "mean_upper": mean.high,
                        "paper_mean": paper_mean.value})  # fmt: skip
    built.plot_frame = pd.DataFrame.from_records(records)
    return built


def moe_grid(params: dict[str, Any], name: str, grid: list[Cell], runs_dir: Path) -> Built:
    """Table 4: the T x K grid, ours and the paper's as two blocks (and their difference)."""
    results = {(c.row, c.column): cell_result(runs_dir, c.runs) for c in grid}
    t4 = params["experiments"][name]
    ks = [f"K={k}" for k in t4["top_k"]]
    row_names = ["None", *(f"T={t}" for t in t4["experts"])]

    def block(title: str, section: str, value) -> Table:
        rows = []
        for r in row_names:
            cells: list = []
            for i, k in enumerate(ks):
                t = 0 if r == "None" else int(r[2:])
                valid = (r == "None" and i == 0) or (r != "None" and int(k[2:]) <= t)
                cells.append(value(r, k) if valid else NONE)
            rows.append((r, cells))
        return Table("table4", title, ["T \\ K", *ks], rows, section=section)

    full_cell = reference_of(params, grid)
    full = results[(full_cell.row, full_cell.column)] if full_cell else None

    def ours(r: str, k: str) -> list[Num]:
        result = results.get((r, "" if r == "None" else k))
        if result is None:
            return [Num(None, metric=m) for m in TABLE4_METRICS]
        stats = [result.mean[m] for m in TABLE4_METRICS]
        numbers = [Num.of(s, m) for s, m in zip(stats, TABLE4_METRICS, strict=True)]
        if full is None or result is full:
            return numbers
        result.comparable(full)
        return versus(numbers, stats, [full.mean[m] for m in TABLE4_METRICS])

    def published(r: str, k: str) -> list[Num]:
        return nums(paper.grid_cell(name, r if r == "None" else f"{r} {k}"), TABLE4_METRICS)

    tables = [
        block(f"{OURS}: I-AUROC/P-AUROC", "ours", ours),
        block("paper: I-AUROC/P-AUROC", "paper", published),
    ]
    for t in tables:
        _mark_all(t)
    if all(comparable(r, grid[0].points[0].role) for r in results.values()):
        tables.append(
            block(
                "difference (this benchmark minus paper)",
                "difference",
                lambda r, k: difference(ours(r, k), published(r, k)),
            )
        )
    tables[-1].notes = [
        f"{NONE}: K > T (not a valid setting). '-': no value (the paper's table stops at "
        "K = 4). Bold: best, underlined: second best over the grid, per metric.",
        *(
            [differs_note(f"the full model ({full_cell.row}, {full_cell.column})")]
            if paired_with(full)
            else []
        ),
    ]
    ordered = list(results.values())
    return Built.of_tables(name, grid, tables, ordered, _means(grid, ordered, TABLE4_METRICS))


def _mark_all(table: Table) -> None:
    groups = [c for _, cells in table.rows for c in cells if isinstance(c, list)]
    for position in range(len(TABLE4_METRICS)):
        mark([g[position] for g in groups])


def backbone_resolution(
    params: dict[str, Any], name: str, grid: list[Cell], runs_dir: Path
) -> Built:
    """Fig. 4's data: mTotal and the five class means per backbone and resolution."""
    records, results = [], []
    for c in grid:
        result = cell_result(runs_dir, c.runs)
        results.append(result)
        records.append(
            {
                "backbone": c.row,
                "resolution": int(c.column),
                "trained_resolution": trained_setting(runs_dir, c.runs[0], "backbone.resolution"),
                "mtotal": result.mtotal.mean,
                "std": result.mtotal.std,
                "mtotal_lower": (result.mtotal.interval or (None, None))[0],
                "mtotal_upper": (result.mtotal.interval or (None, None))[1],
                "paper_mtotal": paper.figure_point(name, f"{c.row} {c.column}"),
                **{m: result.mean[m].mean for m in METRICS},
            }
        )
    frame = pd.DataFrame.from_records(records)
    summary = {f"{row.backbone} {row.resolution}": row.mtotal for row in frame.itertuples()}
    return Built(name, EXPERIMENTS[name], grid, [], results, frame, summary)


def _change(stat: Stat, reference: Stat, metric: str) -> Num:
    """`stat` minus `reference`: with its 95 % paired interval and a dagger when the runs
    were bootstrapped, else the bare difference."""
    d = stat.versus(reference)
    if d is None:
        return Num(stat.mean - reference.mean, metric=metric)
    return Num(d.value, metric=metric, low=d.low, high=d.high, versus=d, brackets=True)


def s1_cost(params: dict[str, Any], grid: list[Cell], runs_dir: Path) -> str:
    """What Table S1 adds, from the reference run's cost (cost.json, as Table 5): each
    variant run costs about as much as the main run (the same network)."""
    reference = grid[0].runs[0]
    cost = read_cost(runs_dir, reference)
    epochs = trained_setting(runs_dir, reference, "train.epochs") or 0
    runs = sum(len(c.runs) for c in grid[1:])
    hours = runs * epochs * cost["seconds_per_epoch"] / 3600
    kind = "CPU" if str(cost.get("device", "")).startswith("CPU") else "GPU"
    return (
        f"Cost: Table S1 adds {runs} runs beyond the main one; at the main run's training "
        f"cost ({epochs} epochs x {cost['seconds_per_epoch']:.3g} s per epoch on "
        f"{cost.get('device', 'its device')}, cost.json) that is about {hours:.3g} {kind} "
        "hours of training, plus each run's inference."
    )


def sensitivity(params: dict[str, Any], name: str, grid: list[Cell], runs_dir: Path) -> Built:
    """Table S1: the reference (the main configuration), then one row per changed choice,
    sorted by the size of its effect on mTotal: the five class means, mTotal, and its
    differences to the reference in mTotal, I-AUROC and P-AUROC, each with its paired 95 %
    interval and a dagger where that excludes 0."""
    results = [cell_result(runs_dir, c.runs) for c in grid]
    ref = results[0]
    for result in results[1:]:
        result.comparable(ref)
    order = sorted(
        range(1, len(grid)), key=lambda i: -abs(results[i].mtotal.mean - ref.mtotal.mean)
    )
    rows = [(grid[0].row, [nums(ref.mean), [Num.of(ref.mtotal, "mtotal")], "", "", ""])]
    for i in order:
        r = results[i]
        changes = [
            [_change(r.mtotal, ref.mtotal, "mtotal")],
            *([_change(r.mean[m], ref.mean[m], m)] for m in TABLE4_METRICS),
        ]
        rows.append((grid[i].row, [nums(r.mean), [Num.of(r.mtotal, "mtotal")], *changes]))
    cells = "/".join(METRIC_LABELS[m] for m in METRICS)
    header = ["setting", f"{cells} ({OURS})", "mTotal"]
    header += [
        f"difference in {label}" for label in ("mTotal", *map(METRIC_LABELS.get, TABLE4_METRICS))
    ]
    table = Table(
        name,
        "",
        header,
        rows,
        notes=[
            "Each row trains the main configuration with the one setting shown changed "
            f"(dataset of the {params['experiments'][name]['dataset']} role), sorted by the "
            "size of its effect on mTotal; the paper has no such table: it shows which of "
            "the choices it leaves open move the numbers. A difference is the row minus the "
            "reference, with its 95 % paired bootstrap interval in brackets. Bold: best, "
            "underlined: second best in the column.",
            *([differs_note("the reference")] if paired_with(ref) else []),
            s1_cost(params, grid, runs_dir),
        ],
    )
    mark_columns(table, [0, 1])
    summary = {
        c.row: {**{m: r.mean[m].mean for m in METRICS}, "mtotal": r.mtotal.mean}
        for c, r in zip(grid, results, strict=True)
    }
    return Built.of_tables(name, grid, [table], results, summary)


def per_defect(params: dict[str, Any], name: str, cells: list[Cell], runs_dir: Path) -> Built:
    """The main run per class and defect type: each type against the normal images."""
    (cell,) = cells
    result = cell_result(runs_dir, cell.runs)
    rows, count = [], 0
    for cls, types in defect_results(runs_dir, cell.runs).items():
        for defect, values in types.items():
            numbers = [[Num.of(values[m], m)] for m in DEFECT_METRICS]
            rows.append((f"{cls} / {defect}", [str(values["images"]), *numbers]))
            count += 1
    labels = [METRIC_LABELS[m] for m in DEFECT_METRICS]
    table = Table(
        name,
        "",
        ["class / defect type", "images", *labels],
        rows,
        notes=[
            "Each defect type of a class (its test folder) against the class's normal test "
            "images: I-AUROC over those images, the pixel metrics over their pixels; "
            "images: the type's test images. '-': the type's masks hold no defect pixel."
        ],
    )
    summary = {"defect types": count}
    return Built.of_tables(name, cells, [table], [result], summary)


DATASET_TITLES = {"mvtec": "MVTec AD", "visa": "VisA", "mvtec_ad2": "MVTec AD 2",
                  "mpdd": "MPDD", "btad": "BTAD", "realiad": "Real-IAD"}  # fmt: skip


def benchmarks(params: dict[str, Any], name: str, cells: list[Cell], runs_dir: Path) -> Built:
    """The main configuration per dataset: a table of class means and mTotal (one row per
    dataset), then each dataset's classes, as Tables 1 and 3 give them."""
    results = [cell_result(runs_dir, c.runs) for c in cells]
    header = ["dataset", "trained on", "classes", *(METRIC_LABELS[m] for m in METRICS), "mTotal"]
    means = Table(name, "per-dataset means", header, [], section="means")
    tables = [means]
    for c, result in zip(cells, results, strict=True):
        title = DATASET_TITLES.get(c.row, c.row)
        numbers = [[Num.of(result.mean[m], m)] for m in METRICS]
        total = [Num.of(result.mtotal, "mtotal")]
        means.rows.append((title, [result.dataset or "-", str(len(result.classes)), *numbers,
                                   total]))  # fmt: skip
        rows: list[tuple[str, list]] = [
            (cls, [[Num.of(stats[m], m)] for m in METRICS]) for cls, stats in result.classes.items()
        ]
        rows.append(("Mean", [[Num.of(result.mean[m], m)] for m in METRICS]))
        tables.append(Table(name, title, ["class", *(METRIC_LABELS[m] for m in METRICS)], rows,
                            section=c.row))  # fmt: skip
    mark_columns(means, list(range(2, 2 + len(METRICS) + 1)))
    epochs = ", ".join(
        f"{DATASET_TITLES.get(c.row, c.row)} {trained_setting(runs_dir, c.runs[0], 'train.epochs')}"
        for c in cells
    )
    tables[-1].notes = [
        "The paper's main configuration (params.yaml `main`) on each dataset that "
        "data.prepare prepares; class means unweighted, mTotal the mean of the five. "
        f"Epochs: {epochs or '-'} (docs/REPRODUCTION.md: the paper's rule for datasets it "
        "did not use). Bold: best, underlined: second best in the column."
        if cells
        else "No dataset of experiments.benchmarks.datasets is prepared (data.prepare)."
    ]
    summary = {
        c.row: {**{m: r.mean[m].mean for m in METRICS}, "mtotal": r.mtotal.mean}
        for c, r in zip(cells, results, strict=True)
    }
    return Built.of_tables(name, cells, tables, results, summary)


COST_COLUMNS = {  # cost.json key: the column, numbers to 3 significant digits
    "params_trainable_m": "trainable params (M)",
    "params_total_m": "all params (M)",
    "gflops_train_step": "GFLOPs / image, train step",
    "gflops_encoder": "GFLOPs / image, encoder",
    "gflops_inference": "GFLOPs / image, inference",
    "seconds_per_epoch": "s / epoch",
    "inference_images_per_s": "inference images / s",
    "peak_memory_gb": "peak memory (GiB)",
}


def cost(params: dict[str, Any], name: str, grid: list[Cell], runs_dir: Path) -> Built:
    """Table 5: what each run cost (cnc.training.cost), beside its mTotal; mean (and SD)
    over seeds."""
    results = [cell_result(runs_dir, c.runs) for c in grid]
    rows, records = [], []
    for c, result in zip(grid, results, strict=True):
        costs = [read_cost(runs_dir, r) for r in c.runs]
        numbers = [Num.of(Stat.of([x[k] for x in costs]), k) for k in COST_COLUMNS]
        for n in numbers:
            n.fmt = ".3g"
        devices = ", ".join(sorted({x["device"] for x in costs}))
        rows.append((c.row, [*([n] for n in numbers), devices, [Num.of(result.mtotal, "mtotal")]]))
        values = {k: n.value for k, n in zip(COST_COLUMNS, numbers, strict=True)}
        record = {"cell": c.row, "runs": " ".join(c.runs), **values, "device": devices}
        records.append({**record, "mtotal": result.mtotal.mean})
    table = Table(
        name,
        "",
        ["run", *COST_COLUMNS.values(), "device", "mTotal"],
        rows,
        notes=[
            "FLOPs counted by torch.utils.flop_counter per image (forward and backward for a "
            "training step on cached features; the frozen encoder once per training image "
            "with the cache); seconds per epoch: the median epoch; peak memory: GPU memory "
            "allocated, or the process's resident memory on a CPU. Timings depend on the "
            "device and vary from run to run."
        ],
    )
    frame = pd.DataFrame.from_records(records)
    summary = {r["cell"]: {k: v for k, v in r.items() if k != "cell"} for r in records}
    return Built(name, EXPERIMENTS[name], grid, [table], results, frame, summary)


Layout = Callable[[dict[str, Any], str, list[Cell], Path], Built]
LAYOUTS: dict[str, Layout] = {
    "per_class": per_class,
    "ablation": ablation,
    "moe_grid": moe_grid,
    "backbone_resolution": backbone_resolution,
    "sensitivity": sensitivity,
    "cost": cost,
    "per_defect": per_defect,
    "benchmarks": benchmarks,
}


def build(params: dict[str, Any], name: str, runs_dir: Path) -> Built:
    """One experiment of the registry, from the runs' saved metrics."""
    experiment = EXPERIMENTS[name]
    cells = experiment.cells(params, params["experiments"][name])
    return LAYOUTS[experiment.layout](params, name, cells, Path(runs_dir))

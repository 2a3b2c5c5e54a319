"""The paper's experiments, one registry entry per table or figure.

params.yaml's `experiments.<name>` says what an experiment varies (its dataset, the rows
of the ablation, the T x K grid, the backbones and resolutions). Its entry here says how
that becomes cells of grid points, its title, the layout that renders it
(`cnc.report.layouts.LAYOUTS`), the figures drawn from it and the paper's numbers beside
it. The grid (every run to train), the report builder, the summary and `cnc compare
--table` all read this registry: a new table is a params.yaml entry, a schema entry and
one entry here.

A grid point stands for one point of the paper's grid and names its run (paper dataset,
backbone, resolution, switches, MoE, seed) whatever the scale; the scale decides what is
trained for it (cnc.pipeline.grid). A run that several tables share is trained once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnc.errors import SettingsError, UsageError

TABLE_FILES = ("md", "tex", "csv", "html")
DEFAULT_TARGET = "all"  # what `snakemake all` and `dvc repro` build


@dataclass(frozen=True, order=True)
class GridPoint:
    """One point of the paper's grid."""

    role: str  # the dataset it names: the paper's mvtec or visa, or mvtec_ad2, mpdd, ...
    backbone: str  # a paper backbone name, e.g. ViT-L-14-336
    resolution: int  # the paper's input resolution
    mlf: bool
    constraint: bool  # the cross-modal normality constraint ("CNC" in Table 2)
    experts: int  # T; 0 = no MoE
    top_k: int  # K (0 when there is no MoE)
    seed: int
    # Settings changed beyond the grid's axes (Table S1): (dotted key, value as JSON).
    variant: tuple[tuple[str, str], ...] = ()

    @property
    def overrides(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self.variant}

    @property
    def name(self) -> str:
        backbone = self.backbone.lower().replace("vit-", "vit").replace("-", "", 1)
        backbone = backbone.replace("-", "_")
        moe = f"moeT{self.experts}K{self.top_k}" if self.experts else "nomoe"
        parts = (
            self.role,
            backbone,
            f"r{self.resolution}",
            "mlf" if self.mlf else "nomlf",
            "cnc" if self.constraint else "nocnc",  # the paper's name of the switch
            moe,
            *(_label(key, value) for key, value in self.overrides.items()),
            f"s{self.seed}",
        )
        return "-".join(parts)


def _label(key: str, value: Any) -> str:
    """`model.noise_std`, 0.05 -> noise_std_0.05; `backbone.taps`, [6, 12, 18] -> taps_6_12_18."""
    shown = "_".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{key.split('.')[-1]}_{shown}".lower()


def variant_of(overrides: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A grid point's `variant` from settings overrides {dotted key: value}."""
    return tuple(sorted((key, json.dumps(value)) for key, value in overrides.items()))


def main_point(params: dict[str, Any], role: str, seed: int, **changes: Any) -> GridPoint:
    """The paper's main configuration (params.yaml `main`) on `role`, with `changes`."""
    fields = {"role": role, "seed": seed, **params["main"], **changes}
    if not fields["experts"]:
        fields["top_k"] = 0
    return GridPoint(**fields)


@dataclass(frozen=True)
class Cell:
    """One cell of a table or figure: its row and column, and one run per seed."""

    row: str
    column: str
    points: tuple[GridPoint, ...]

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.points)


def _cell(params: dict[str, Any], row: str, column: str, role: str, **changes: Any) -> Cell:
    points = tuple(main_point(params, role, s, **changes) for s in params["seeds"])
    return Cell(row, column, points)


# How each kind of experiment chooses its cells, from (params, its params.yaml entry).


def main_cells(params: dict[str, Any], spec: dict[str, Any]) -> list[Cell]:
    """The main configuration on one dataset (Tables 1 and 3)."""
    return [_cell(params, "main", "", spec["dataset"])]


def ablation_cells(params: dict[str, Any], spec: dict[str, Any]) -> list[Cell]:
    """One row per [MLF, CNC, MoE] switch combination; MoE on = the main T and K."""
    experts = params["main"]["experts"]
    return [
        _cell(params, row, "", spec["dataset"], mlf=mlf, constraint=cnc, experts=experts * moe)
        for row, (mlf, cnc, moe) in spec["rows"].items()
    ]


def moe_cells(params: dict[str, Any], spec: dict[str, Any]) -> list[Cell]:
    """MoE "None" and every T x K with K <= T (Table 4)."""
    return [_cell(params, "None", "", spec["dataset"], experts=0)] + [
        _cell(params, f"T={t}", f"K={k}", spec["dataset"], experts=t, top_k=k)
        for t in spec["experts"]
        for k in spec["top_k"]
        if k <= t
    ]


def choice_cells(params: dict[str, Any], spec: dict[str, Any]) -> list[Cell]:
    """The main configuration (the reference row), then once per variant with one choice
    the paper leaves open changed (Table S1)."""
    rows = [_cell(params, "reference (main configuration)", "", spec["dataset"])]
    for overrides in spec["variants"]:
        row = ", ".join(f"{key} = {json.dumps(value)}" for key, value in overrides.items())
        rows.append(_cell(params, row, "", spec["dataset"], variant=variant_of(overrides)))
    return rows


def benchmark_cells(params: dict[str, Any], spec: dict[str, Any]) -> list[Cell]:
    """The main configuration on each listed dataset that the scale trains on a dataset
    data.prepare prepares (the per-dataset benchmark); none prepared: no cells."""
    trained_on = params["scales"][params["scale"]]["datasets"]
    prepared = params["data"]["prepare"]
    return [_cell(params, role, "", role) for role in spec["datasets"]
            if trained_on.get(role) in prepared]  # fmt: skip


def backbone_resolution_cells(params: dict[str, Any], spec: dict[str, Any]) -> list[Cell]:
    """Every backbone at every input resolution (Fig. 4)."""
    return [
        _cell(params, b, str(r), spec["dataset"], backbone=b, resolution=r)
        for b in spec["backbones"]
        for r in spec["resolutions"]
    ]


def cost_cells(params: dict[str, Any], spec: dict[str, Any]) -> list[Cell]:
    """Every cell of the experiments `spec["from"]` names (Table 5: the Fig. 4 and Table 4
    runs), each labelled `<experiment>: <row> <column>`."""
    unknown = [name for name in spec["from"] if name not in EXPERIMENTS]
    if unknown:
        raise SettingsError(f"experiments.*.from: unknown experiment(s) {', '.join(unknown)}")
    return [
        Cell(f"{name}: {c.row} {c.column}".strip(), "", c.points)
        for name in spec["from"]
        for c in EXPERIMENTS[name].cells(params, params["experiments"][name])
    ]


METRICS_SOURCE = "All numbers are percentages computed from the runs' saved metrics.json files."
DEFECTS_SOURCE = "Percentages from the `defects` of the run's saved metrics.json."


@dataclass(frozen=True)
class Plot:
    """A DVC plot of an experiment's data (`dvc plots show`): a wide CSV with one row per
    cell, its columns `x` and `y` drawn with a template of DVC's."""

    file: str  # in the report folder; <name>.csv when that is the data, else its own file
    x: str
    y: str
    template: str


@dataclass(frozen=True)
class Experiment:
    title: str
    cells: Callable[[dict[str, Any], dict[str, Any]], list[Cell]]
    layout: str  # a key of cnc.report.layouts.LAYOUTS
    files: tuple[str, ...] = TABLE_FILES  # report files <name>.<ext> it writes
    figures: tuple[str, ...] = ()  # keys of cnc.report.figures.FIGURES, one file each
    run_figures: tuple[str, ...] = ()  # keys of RUN_FIGURES: <key>-<run>.png per run
    heatmaps: bool = False  # the workflow draws heat maps for its runs
    target: str = DEFAULT_TARGET  # the workflow target that builds it
    measured: bool = False  # timings: not the same bit for bit from one run to the next
    source: str = METRICS_SOURCE  # where its numbers come from (the reports' preamble)
    paper_numbers: bool = True  # its layout shows the paper's numbers beside ours
    plot: Plot | None = None  # declared in dvc.yaml (default target only)

    @property
    def is_table(self) -> bool:
        return "md" in self.files


def per_defect(title: str) -> Experiment:
    """The main run per class and defect type (no paper numbers: the paper has none)."""
    return Experiment(
        title,
        main_cells,
        "per_defect",
        files=("md", "csv", "html"),
        source=DEFECTS_SOURCE,
        paper_numbers=False,
    )


EXPERIMENTS: dict[str, Experiment] = {
    "table1": Experiment(
        "Table 1: multi-class anomaly detection on MVTec AD",
        main_cells,
        "per_class",
        run_figures=("diagnostics",),
        heatmaps=True,
    ),
    "table2": Experiment(
        "Table 2: ablation of MLF, CNC and MoE on MVTec AD",
        ablation_cells,
        "ablation",
        figures=("ablation.png", "training_curves.png"),
        plot=Plot("table2-means.csv", x="mean", y="row", template="bar_horizontal"),
    ),
    "table3": Experiment(
        "Table 3: multi-class anomaly detection on VisA",
        main_cells,
        "per_class",
        run_figures=("diagnostics",),
        heatmaps=True,
    ),
    "table4": Experiment(
        "Table 4: MoE experts T and top K on MVTec AD",
        moe_cells,
        "moe_grid",
        figures=("table4_heatmap.png",),
    ),
    "fig4": Experiment(
        "Fig. 4: backbone and input resolution on MVTec AD",
        backbone_resolution_cells,
        "backbone_resolution",
        files=("csv",),
        figures=("fig4.png",),
        # points, not lines: one line through every backbone's resolutions would zigzag
        plot=Plot("fig4.csv", x="resolution", y="mtotal", template="scatter"),
    ),
    "table5": Experiment(
        "Table 5: cost of the Fig. 4 and Table 4 runs",
        cost_cells,
        "cost",
        figures=("cost.png",),
        measured=True,
        source="Costs from each run's cost.json; mTotal (%) from its metrics.json.",
        paper_numbers=False,  # the paper reports no cost
    ),
    "defects-mvtec": per_defect("Per defect type: the main run on MVTec AD"),
    "defects-visa": per_defect("Per defect type: the main run on VisA"),
    "tableS1": Experiment(
        "Table S1: sensitivity to choices the paper leaves open",
        choice_cells,
        "sensitivity",
        target="choices",  # opt-in: `snakemake --cores 1 choices`
        paper_numbers=False,  # the paper has no such table
    ),
    "benchmarks": Experiment(
        "Beyond the paper: the main configuration on every prepared dataset",
        benchmark_cells,
        "benchmarks",
        target="benchmarks",  # opt-in: `snakemake --cores 1 benchmarks`
        paper_numbers=False,  # the paper reports MVTec AD and VisA only (Tables 1 and 3)
    ),
}
TARGETS = tuple(dict.fromkeys(e.target for e in EXPERIMENTS.values()))


def experiments(target: str | None = None) -> dict[str, Experiment]:
    """The registry's experiments of one workflow target (all of them for None)."""
    if target is not None and target not in TARGETS:
        raise UsageError(f"target {target!r}: choose one of {', '.join(TARGETS)}")
    return {n: e for n, e in EXPERIMENTS.items() if target in (None, e.target)}


def cells(params: dict[str, Any], target: str | None = None) -> dict[str, list[Cell]]:
    """For each experiment (of `target`), its cells in the paper's order."""
    chosen = experiments(target).items()
    return {name: e.cells(params, params["experiments"][name]) for name, e in chosen}


def tables() -> list[str]:
    return [name for name, e in EXPERIMENTS.items() if e.is_table]


HEADLINE = "headline.json"  # DVC's metrics: a few numbers, so `dvc metrics show` fits a terminal


def report_files(target: str = DEFAULT_TARGET) -> list[str]:
    """Every file `cnc report --target` writes in the report folder; the default target
    adds the summary and the index."""
    chosen = experiments(target).items()
    own = [f"{name}.{ext}" for name, e in chosen for ext in e.files]
    own += [e.plot.file for _, e in chosen if e.plot and e.plot.file not in own]
    extra = ["summary.json", HEADLINE, "README.md"]
    return own + (extra if target == DEFAULT_TARGET else [])


def run_figure(key: str, run: str) -> str:
    return f"{key}-{run}.png"


def report_item(file: str) -> dict[str, Any] | None:
    """How a report file or figure appears in Snakemake's HTML report (`snakemake
    --report`): its caption's stem (cnc.report.captions writes it), category and labels;
    None for a file the HTML report leaves out (the same table as md, tex or csv)."""
    stem, _, ext = file.rpartition(".")
    for name, e in EXPERIMENTS.items():
        if ext == "html" and stem == name:
            return {"caption": name, "category": "Tables", "labels": {"table": e.title}}
        if ext == "png" and file in e.figures:
            return {"caption": stem, "category": "Figures", "labels": {"figure": e.title}}
        for key in e.run_figures:
            if ext == "png" and stem.startswith(f"{key}-"):
                run = stem.removeprefix(f"{key}-")
                return {"caption": key, "category": "Runs", "subcategory": key,
                        "labels": {"run": run}}  # fmt: skip
    return None


def figure_files(params: dict[str, Any], target: str = DEFAULT_TARGET) -> list[str]:
    """Every figure file `cnc report --target` draws: each experiment's, and one per run
    where asked; each as PNG and as PDF (vector)."""
    chosen, grid = experiments(target), cells(params, target)
    per_run = {
        run_figure(key, r): None
        for name, e in chosen.items()
        for key in e.run_figures
        for c in grid[name]
        for r in c.runs
    }
    pngs = [f for e in chosen.values() for f in e.figures] + list(per_run)
    return [name for png in pngs for name in (png, png.removesuffix(".png") + ".pdf")]


def heatmap_runs(params: dict[str, Any]) -> list[str]:
    """The runs whose heat maps the workflow draws: `evaluate.heatmaps` says main (those of
    Tables 1 and 3), all, or none."""
    which = (params.get("evaluate") or {}).get("heatmaps", "main")
    grid = cells(params)
    chosen = {
        r
        for name, e in EXPERIMENTS.items()
        if which == "all" or (which == "main" and e.heatmaps)
        for c in grid[name]
        for r in c.runs
    }
    return sorted(chosen)

"""`cnc report`: every table and figure from the runs' saved metrics.json files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnc import provenance
from cnc.io import atomic_path, committed, remove_stale_temporaries, write_json, write_text
from cnc.pipeline import grid
from cnc.pipeline.experiments import DEFAULT_TARGET, HEADLINE, experiments, report_files, run_figure
from cnc.report.captions import (
    REPORT_DIR,
    figure_caption,
    front_page,
    run_figure_caption,
    table_caption,
)
from cnc.report.figures import FIGURES, RUN_FIGURES, VECTOR
from cnc.report.latex import latex
from cnc.report.layouts import Built, build, preamble
from cnc.report.render import html, markdown
from cnc.runs import checked_metrics, reading_runs


def subtitle(params: dict[str, Any]) -> str:
    scale = params["scale"]
    return f"scale {scale}" + ("" if scale == "paper" else " - not comparable to the paper")


def _index_line(built: Built) -> str:
    name, title = built.name, built.experiment.title
    if built.experiment.is_table:
        links = ", ".join(f"[{k}]({name}.{e})" for e, k in (("html", "HTML"), ("tex", "LaTeX"),
                          ("csv", "CSV")) if e in built.experiment.files)  # fmt: skip
        return f"- [{title}]({name}.md) ({links})"
    return f"- [{title} (data)]({name}.csv)"


def headline(built: list[Built]) -> dict[str, dict[str, float]]:
    """mTotal, I-AUROC and P-AUROC of the per-class tables (1 and 3), two decimals: the
    DVC metrics file, short enough for `dvc metrics show` on a terminal."""
    keys = ("mtotal", "i_auroc", "p_auroc")
    return {
        b.name: {k: round(b.summary[k], 2) for k in keys}
        for b in built
        if all(k in b.summary for k in keys)
    }


def write_reports(
    params: dict[str, Any],
    runs_dir: Path | None = None,
    reports_dir: Path | None = None,
    figures_dir: Path | None = None,
    target: str = DEFAULT_TARGET,
) -> list[Path]:
    """Write the files (md, tex, csv) and figures of every experiment of a workflow
    target, by default in the scale's folders; the default target adds summary.json and
    an index. Returns the paths written.

    Every run read is held (shared: no step writes it meanwhile) and checked first: its
    metrics must belong with its files (cnc.runs.checked_metrics) and be scored under
    params.yaml's `evaluate` protocol. The files are committed together, the index
    (README.md; for another target its first file) last."""
    scale = params["scale"]
    runs_dir = Path(runs_dir or grid.runs_dir(scale))
    reports_dir = Path(reports_dir or grid.reports_dir(scale))
    figures_dir = Path(figures_dir or grid.figures_dir(scale))
    names = report_files(target)
    commit = reports_dir / (names[-1] if target == DEFAULT_TARGET else names[0])
    points = grid.grid_points(params, target)
    with reading_runs([runs_dir / name for name in points], "a report"):
        for name, point in points.items():
            checked_metrics(runs_dir / name, grid.scoring(params, point))
        for folder in (reports_dir, figures_dir):
            remove_stale_temporaries(folder)
        with committed(commit) as outputs:
            staged = outputs.within(reports_dir), outputs.within(figures_dir)
            figures = _write(params, target, runs_dir, *staged)
    return [reports_dir / f for f in names] + [figures_dir / f.name for f in figures]


def _write(
    params: dict[str, Any], target: str, runs_dir: Path, reports_dir: Path, figures_dir: Path
) -> list[Path]:
    sub = subtitle(params)
    built = [build(params, name, runs_dir) for name in experiments(target)]
    figures: list[Path] = []
    texts = reports_dir / REPORT_DIR  # Snakemake's report: front page and captions
    for b in built:
        if b.experiment.is_table:
            write_text(texts / "captions" / f"{b.name}.rst", table_caption(b))
        for figure in b.experiment.figures:
            caption = figure_caption(figure, b)
            write_text(texts / "captions" / f"{Path(figure).stem}.rst", caption)
        for key in b.experiment.run_figures:
            write_text(texts / "captions" / f"{key}.rst", run_figure_caption(key))
    write_text(texts / f"{target}.rst", front_page(params, built, target))
    for b in built:
        head = preamble(params, b.experiment.title, b.results, b.experiment)
        if "md" in b.experiment.files:
            write_text(reports_dir / f"{b.name}.md", markdown(b.tables, head))
        if "tex" in b.experiment.files:
            write_text(reports_dir / f"{b.name}.tex", latex(b.tables, head, b.name))
        if "html" in b.experiment.files:
            write_text(reports_dir / f"{b.name}.html", html(b.tables, head))
        with atomic_path(reports_dir / f"{b.name}.csv") as tmp:
            b.frame.to_csv(tmp, index=False)
        if b.plot_frame is not None and b.experiment.plot:
            with atomic_path(reports_dir / b.experiment.plot.file) as tmp:
                b.plot_frame.to_csv(tmp, index=False)
        for figure in b.experiment.figures:
            FIGURES[figure](b, runs_dir, figures_dir / figure, sub)
            figures += [figures_dir / figure, (figures_dir / figure).with_suffix(VECTOR)]
        for key in b.experiment.run_figures:
            for run in dict.fromkeys(r for c in b.cells for r in c.runs):
                path = figures_dir / run_figure(key, run)
                RUN_FIGURES[key](run, runs_dir, path, sub)
                figures += [path, path.with_suffix(VECTOR)]
    if target != DEFAULT_TARGET:
        return figures
    runs = {
        n: (p, protocol)
        for b in built
        for c in b.results
        for n, p, protocol in zip(c.runs, c.provenance, c.protocols, strict=True)
    }
    summary = {
        "scale": params["scale"],
        **{b.name: b.summary for b in built},
        "protocol": {n: protocol for n, (_, protocol) in sorted(runs.items())},
        "provenance": {
            "report": {"code": provenance.code_state(), "packages": provenance.package_versions()},
            "runs": {n: provenance.summary([p]) for n, (p, _) in sorted(runs.items())},
        },
    }
    write_json(reports_dir / "summary.json", summary)
    write_json(reports_dir / HEADLINE, headline(built))
    head = preamble(params, "CNC benchmark reports", [r for b in built for r in b.results])
    folder = f"../../figures/{params['scale']}"
    links = [
        f"- [{f.name}]({folder}/{f.name}) ([PDF]({folder}/{f.with_suffix(VECTOR).name}))"
        for f in figures
        if f.suffix != VECTOR
    ]
    index = [*head, "", "Tables and data:", *map(_index_line, built), "", "Figures:", *links]
    write_text(reports_dir / "README.md", "\n".join(index) + "\n")
    return figures

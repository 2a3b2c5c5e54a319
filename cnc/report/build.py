"""`cnc report`: every table and figure from the runs' saved metrics.json files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cnc.grid import FIGURE_FILES, REPORT_FILES, cells
from cnc.io import atomic_path, write_json, write_text
from cnc.report import figures
from cnc.report.render import latex, markdown, tidy
from cnc.report.results import train_log
from cnc.report.tables import (
    TABLE2_METRICS,
    TABLE4_METRICS,
    TITLES,
    build_tables,
    fig4_data,
    preamble,
)


def subtitle(params: dict[str, Any]) -> str:
    scale = params["scale"]
    return f"scale {scale}" + ("" if scale == "paper" else " - not comparable to the paper")


def summary(params: dict[str, Any], built: dict, fig4: pd.DataFrame) -> dict[str, Any]:
    """The headline numbers of every table, for `dvc metrics show` and quick diffs."""
    out: dict[str, Any] = {"scale": params["scale"]}
    for name in ("table1", "table3"):
        result = built[name][1][0]
        out[name] = {**{m: s.mean for m, s in result.mean.items()}, "mtotal": result.mtotal.mean}
    grid = cells(params)
    for name, keys in (("table2", TABLE2_METRICS), ("table4", TABLE4_METRICS)):
        out[name] = {
            f"{c.row} {c.column}".strip(): {m: r.mean[m].mean for m in keys}
            for c, r in zip(grid[name], built[name][1], strict=True)
        }
    out["fig4"] = {f"{row.backbone} {row.resolution}": row.mtotal for row in fig4.itertuples()}
    return out


def write_reports(
    params: dict[str, Any], runs_dir: Path, reports_dir: Path, figures_dir: Path
) -> list[Path]:
    """Write Tables 1-4 (md, tex, csv), the Fig. 4 data, an index and the four figures."""
    runs_dir, reports_dir, figures_dir = Path(runs_dir), Path(reports_dir), Path(figures_dir)
    built = build_tables(params, runs_dir)
    index = []
    for name, (tables, results) in built.items():
        head = preamble(params, TITLES[name], results)
        write_text(reports_dir / f"{name}.md", markdown(tables, head))
        write_text(reports_dir / f"{name}.tex", latex(tables, head))
        with atomic_path(reports_dir / f"{name}.csv") as tmp:
            tidy(tables).to_csv(tmp, index=False)
        index.append(f"- [{TITLES[name]}]({name}.md) ([LaTeX]({name}.tex), [CSV]({name}.csv))")

    grid = cells(params)
    data, results = fig4_data(grid["fig4"], runs_dir)
    with atomic_path(reports_dir / "fig4.csv") as tmp:
        data.to_csv(tmp, index=False)
    sub = subtitle(params)
    figures.fig4(data, figures_dir / "fig4.png", sub)
    figures.table4_heatmap(built["table4"][0][0], figures_dir / "table4_heatmap.png", sub)
    figures.ablation(built["table2"][0][0], figures_dir / "ablation.png", sub)
    curves = {c.row: train_log(runs_dir, c.runs[0]) for c in grid["table2"]}
    figures.training_curves(curves, figures_dir / "training_curves.png", sub)

    write_json(reports_dir / "summary.json", summary(params, built, data))
    head = preamble(params, "CNC benchmark reports", results)
    figure_links = [f"- [{f}](../../figures/{params['scale']}/{f})" for f in FIGURE_FILES]
    readme = [*head, "", "Tables:", *index, "- [Fig. 4 data](fig4.csv)", "", "Figures:"]
    write_text(reports_dir / "README.md", "\n".join([*readme, *figure_links]) + "\n")
    return [reports_dir / f for f in REPORT_FILES] + [figures_dir / f for f in FIGURE_FILES]

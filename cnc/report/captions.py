"""The texts of Snakemake's HTML report (`snakemake --report`): its front page and a caption
per table and figure, written as reStructuredText beside the reports, from what already
names them (the experiment registry's titles, the layouts' notes, the figures' own
descriptions), so no second copy of a text exists.
"""

from __future__ import annotations

import re
from typing import Any

from cnc.pipeline import grid
from cnc.report import figures
from cnc.report.layouts import Built, preamble
from cnc.report.render import NOT_COMPARABLE

REPORT_DIR = "report"  # under the reports folder: workflow.rst and captions/<file>.rst


def rst(text: str) -> str:
    """Plain text for reStructuredText: Markdown's marks dropped, rst's escaped."""
    text = text.replace("**", "").replace("<u>", "").replace("</u>", "")
    return re.sub(r"([\\*_`|])", r"\\\1", text)


def _paragraph(text: str) -> str:
    return " ".join(text.split())


def table_caption(built: Built) -> str:
    """The table's title, then its notes (what the cells are, the marks)."""
    lines = [f"**{rst(built.experiment.title)}**", ""]
    lines += [rst(n) for t in built.tables[:1] for n in t.notes]
    return "\n".join(lines) + "\n"


def figure_caption(key: str, built: Built) -> str:
    """The figure's experiment title, then the drawing function's own description."""
    doc = (figures.FIGURES[key].__doc__ or "").split("\n\n")[0]
    return f"**{rst(built.experiment.title)}**\n\n{rst(_paragraph(doc))}\n"


def run_figure_caption(key: str) -> str:
    doc = (figures.RUN_FIGURES[key].__doc__ or "").split("\n\n")[0]
    return f"{rst(_paragraph(doc))} Run: {{{{ snakemake.wildcards.run }}}}.\n"


def front_page(params: dict[str, Any], built: list[Built], target: str) -> str:
    """What was run, at which scale, whether it compares with the paper, where the numbers
    came from and how they were scored, and how to browse the report."""
    # The target's first experiment with the paper's numbers beside ours, else its first.
    shown = [b.experiment for b in built]
    experiment = next((e for e in shown if e.paper_numbers), shown[0] if shown else None)
    head = preamble(params, "CNC benchmark", [r for b in built for r in b.results], experiment)
    runs = grid.grid_points(params, target)
    seeds = len(params["seeds"])
    lines = ["CNC benchmark: the reproduction of CNC (Cross-modal Normality Constraint, AAAI "
             "2025) as run here.", ""]  # fmt: skip
    lines += [f"Scale **{params['scale']}**; {len(runs)} runs ({seeds} seed(s) each)."]
    warning = [line for line in head if line.startswith(NOT_COMPARABLE)]
    if warning:  # bold, as the tables' pages have it (the report does not style admonitions)
        lead, _, rest = warning[0].removeprefix("**").partition("**")
        lines += ["", f"**{rst(lead)}** {rst(rest.strip())}", ""]
    facts = [line for line in head[2:] if line and not line.startswith(NOT_COMPARABLE)]
    lines += ["", *(rst(f) + "\n" for f in facts)]
    figures_shown = "**Figures**, " if any(b.experiment.figures for b in built) else ""
    lines += [
        "Browse: **Tables** (every table of the registry, this benchmark beside the paper), "
        f"{figures_shown}**Runs** (each run's metrics per class, training log and diagnostics, "
        "labelled by dataset, backbone, resolution, T, K, ablation row and seed) and "
        "**Heat maps** (per class, for the runs that draw them). Snakemake adds the "
        "workflow graph and the runtime statistics.",
    ]
    return "\n".join(lines) + "\n"

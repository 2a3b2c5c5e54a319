"""A small table model rendered to Markdown, LaTeX and a tidy CSV.

A cell is text, or a group of numbers shown as "a/b/c" like the paper's cells. Numbers
carry an optional SD (shown as mean±SD) and a rank mark: 1 best (bold), 2 second
(underlined), as the paper marks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cnc.report.results import Stat


@dataclass
class Num:
    value: float | None  # None: no value ("-")
    std: float | None = None
    metric: str = ""
    mark: int = 0
    fmt: str = ".1f"  # how the value (and its SD) is shown

    @classmethod
    def of(cls, stat: Stat | None, metric: str = "") -> Num:
        return cls(None, None, metric) if stat is None else cls(stat.mean, stat.std, metric)


Cell = str | list[Num]


@dataclass
class Table:
    name: str
    title: str
    header: list[str]
    rows: list[tuple[str, list[Cell]]]
    notes: list[str] = field(default_factory=list)
    section: str = ""  # several tables can share one file, one section each


def mark(nums: list[Num]) -> None:
    """Mark the best and second-best values as shown (one decimal; higher is better).
    Ties share a mark; a lone value is not marked."""
    present = [n for n in nums if n.value is not None]
    if len(present) < 2:
        return
    values = sorted({round(n.value, 1) for n in present}, reverse=True)
    for n in present:
        v = round(n.value, 1)
        n.mark = 1 if v == values[0] else 2 if len(values) > 1 and v == values[1] else 0


def mark_rows(table: Table, columns: list[int]) -> None:
    """Within each row, rank each metric position across the given columns."""
    for _, cells in table.rows:
        groups = [c for i, c in enumerate(cells) if i in columns and isinstance(c, list)]
        for position in range(max((len(g) for g in groups), default=0)):
            mark([g[position] for g in groups if position < len(g)])


def mark_columns(table: Table, columns: list[int]) -> None:
    """Within each column, rank each metric position across the rows."""
    for col in columns:
        groups = [cells[col] for _, cells in table.rows if isinstance(cells[col], list)]
        for position in range(max((len(g) for g in groups), default=0)):
            mark([g[position] for g in groups if position < len(g)])


def _number(n: Num, style: str) -> str:
    if n.value is None:
        return "-"
    text = f"{n.value:{n.fmt}}"
    if n.std is not None:
        text += f"±{n.std:{n.fmt}}" if style == "md" else f"$\\pm${n.std:{n.fmt}}"
    if n.mark == 1:
        return f"**{text}**" if style == "md" else f"\\textbf{{{text}}}"
    if n.mark == 2:
        return f"<u>{text}</u>" if style == "md" else f"\\underline{{{text}}}"
    return text


def _cell(cell: Cell, style: str) -> str:
    if isinstance(cell, str):
        return cell if style == "md" else _latex_escape(cell)
    return "/".join(_number(n, style) for n in cell)


def _latex_escape(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&")):
        text = text.replace(a, b)
    return text.replace("✓", "\\checkmark").replace("✗", "$\\times$").replace("±", "$\\pm$")


def markdown(tables: list[Table], preamble: list[str]) -> str:
    lines = [*preamble, ""]
    for t in tables:
        lines += [f"### {t.title}", ""] if t.title else []
        lines.append("| " + " | ".join(t.header) + " |")
        lines.append("|" + "|".join("---" for _ in t.header) + "|")
        for label, cells in t.rows:
            lines.append("| " + " | ".join([label, *(_cell(c, "md") for c in cells)]) + " |")
        lines += ["", *(f"{n}" for n in t.notes), ""] if t.notes else [""]
    return "\n".join(lines).rstrip() + "\n"


def latex(tables: list[Table], preamble: list[str]) -> str:
    """Tabulars for `booktabs`; comments carry the preamble (scale, data)."""
    lines = [f"% {line}" for line in preamble] + ["% needs \\usepackage{booktabs, amssymb}", ""]
    for t in tables:
        lines += [f"% {t.title}", "\\begin{tabular}{l" + "c" * (len(t.header) - 1) + "}"]
        lines += ["\\toprule", " & ".join(_latex_escape(h) for h in t.header) + " \\\\"]
        lines.append("\\midrule")
        for label, cells in t.rows:
            row = [_latex_escape(label), *(_cell(c, "tex") for c in cells)]
            lines.append(" & ".join(row) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def tidy(tables: list[Table]) -> pd.DataFrame:
    """One row per number: table section, row, column, metric, value, SD, mark."""
    records = []
    for t in tables:
        for label, cells in t.rows:
            for header, cell in zip(t.header[1:], cells, strict=True):
                if isinstance(cell, list):
                    for n in cell:
                        records.append(
                            {
                                "section": t.section or t.name,
                                "row": label,
                                "column": header,
                                "metric": n.metric,
                                "value": n.value,
                                "std": n.std,
                                "mark": {1: "best", 2: "second"}.get(n.mark, ""),
                            }
                        )
    frame = pd.DataFrame.from_records(
        records, columns=["section", "row", "column", "metric", "value", "std", "mark"]
    )
    return frame.replace({np.nan: None})

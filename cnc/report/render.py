"""A small table model rendered to Markdown and a tidy CSV (LaTeX: cnc.report.latex).

A cell is text, or a group of numbers shown as "a/b/c" like the paper's cells. A number
carries a rank mark (1 best: bold, 2 second: underlined, as the paper marks them), and
where known its 95 % bootstrap interval (shown as "98.6 ±0.4", half its width), its SD
over seeds ("(SD 0.3)") and its paired difference to the table's reference (a dagger
where that difference's interval excludes 0). The CSV has every one in its own column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape as html_escape

import numpy as np
import pandas as pd

from cnc.evaluation.replicates import Difference, interval_shown, shown_number
from cnc.report.results import Stat

DIFFERS = {"md": "†", "tex": "$^\\dagger$"}
METRIC_LABELS = {
    "i_auroc": "I-AUROC",
    "p_auroc": "P-AUROC",
    "aupro": "AUPRO",
    "i_ap": "I-AP",
    "p_ap": "P-AP",
}  # the paired difference's interval excludes 0


@dataclass
class Num:
    value: float | None  # None: no value ("-")
    std: float | None = None
    metric: str = ""
    mark: int = 0
    fmt: str = ".1f"  # how the value (and its SD and interval) is shown
    low: float | None = None  # the 95 % bootstrap interval of the value
    high: float | None = None
    versus: Difference | None = None  # the paired difference to the table's reference
    # A difference: shown signed, its interval as [low, high] (which may be lopsided).
    brackets: bool = False

    @classmethod
    def of(cls, stat: Stat | None, metric: str = "") -> Num:
        if stat is None:
            return cls(None, None, metric)
        low, high = stat.interval or (None, None)
        return cls(stat.mean, stat.std, metric, low=low, high=high)

    @property
    def differs(self) -> bool:
        return self.versus is not None and self.versus.excludes_zero


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


def interval_text(n: Num, style: str) -> str:
    """The number's interval as it is (cnc.evaluation.replicates.interval_shown)."""
    text, bracketed = interval_shown(n.value, n.low, n.high, n.fmt, n.brackets)
    if style == "md":
        return f" {text}"
    shown = text if bracketed else "$\\pm$" + text[1:]
    return f"\\,{{\\scriptsize{shown}}}"


def _number(n: Num, style: str) -> str:
    if n.value is None:
        return "-"
    text = shown_number(n.value, n.fmt, signed=n.brackets)
    if n.mark == 1:
        text = f"**{text}**" if style == "md" else f"\\textbf{{{text}}}"
    elif n.mark == 2:
        text = f"<u>{text}</u>" if style == "md" else f"\\underline{{{text}}}"
    if n.differs:
        text += DIFFERS[style]
    if n.low is not None and n.high is not None:
        text += interval_text(n, style)
    if n.std is not None:
        sd = shown_number(n.std, n.fmt)
        text += f" (SD {sd})" if style == "md" else f"\\,{{\\scriptsize(SD {sd})}}"
    return text


def difference_text(d: Difference | None, fmt: str = ".1f") -> str:
    """ "+1.2 [+0.3, +2.1] p=0.004", with a dagger where the interval excludes 0."""
    if d is None:
        return "-"
    mark = DIFFERS["md"] if d.excludes_zero else ""
    bounds = f"[{shown_number(d.low, fmt, True)}, {shown_number(d.high, fmt, True)}]"
    return f"{shown_number(d.value, fmt, True)}{mark} {bounds} p={d.p:.2g}"


def _cell(cell: Cell, style: str) -> str:
    """A cell as Markdown, or a group of numbers as `style` ("md" or "tex") sets them."""
    if isinstance(cell, str):
        return cell
    return "/".join(_number(n, style) for n in cell)


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


NOT_COMPARABLE = "**Not comparable"  # the preamble's warning paragraph starts so

HTML_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.2em; color: #111; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ccc; text-align: center; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #333; }
.warning { background: #fff3cd; padding: 0.5em 0.8em; border-left: 4px solid #e0a800; }
.note { color: #444; font-size: 13px; }
.n { white-space: nowrap; }
.m { color: #666; font-size: 11px; }
"""


def _html_text(text: str) -> str:
    """Escaped text with Markdown's **bold** and <u>underline</u> kept as HTML."""
    text = html_escape(text, quote=False)
    text = text.replace("&lt;u&gt;", "<u>").replace("&lt;/u&gt;", "</u>")
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)


def _html_cell(cell: Cell) -> str:
    """A cell; a group of numbers with intervals one per line, each named by its metric
    where there are several, so that no number breaks and none needs the header."""
    if isinstance(cell, str) or not any(n.low is not None for n in cell):
        return _html_text(_cell(cell, "md"))

    def named(n: Num) -> str:
        label = METRIC_LABELS.get(n.metric, n.metric) if len(cell) > 1 else ""
        return f"<span class='m'>{label}</span> " if label else ""

    lines = (f"<span class='n'>{named(n)}{_html_text(_number(n, 'md'))}</span>" for n in cell)
    return "<br>".join(lines)


def html(tables: list[Table], preamble: list[str]) -> str:
    """One self-contained HTML page: the preamble's paragraphs (the warning boxed), then
    each table with its numbers as Markdown shows them (intervals as they are, daggers,
    best bold and second underlined) and its notes."""
    title = preamble[0].removeprefix("## ") if preamble else "table"
    head = f"<title>{_html_text(title)}</title><style>{HTML_STYLE}</style>"
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>"]
    parts.append(f"<h2>{_html_text(title)}</h2>")
    for line in preamble[1:]:
        if line:
            kind = "warning" if line.startswith(NOT_COMPARABLE) else "note"
            parts.append(f"<p class='{kind}'>{_html_text(line)}</p>")
    for t in tables:
        parts += [f"<h3>{_html_text(t.title)}</h3>"] if t.title else []
        parts.append("<table><thead><tr>")
        parts += [f"<th>{_html_text(h)}</th>" for h in t.header]
        parts.append("</tr></thead><tbody>")
        for label, cells in t.rows:
            shown = [_html_text(label), *(_html_cell(c) for c in cells)]
            parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in shown) + "</tr>")
        parts.append("</tbody></table>")
        parts += [f"<p class='note'>{_html_text(n)}</p>" for n in t.notes]
    return "\n".join([*parts, "</body></html>"]) + "\n"


CSV_COLUMNS = [
    "section",
    "row",
    "column",
    "metric",
    "value",
    "std",  # over seeds
    "lower",  # the 95 % bootstrap interval of the value
    "upper",
    "mark",
    "diff",  # the paired difference to the table's reference, its interval and p
    "diff_lower",
    "diff_upper",
    "p",
]


def tidy(tables: list[Table]) -> pd.DataFrame:
    """One row per number, its statistics in the columns of CSV_COLUMNS."""
    records = []
    for t in tables:
        for label, cells in t.rows:
            for header, cell in zip(t.header[1:], cells, strict=True):
                if isinstance(cell, list):
                    for n in cell:
                        versus = n.versus
                        records.append(
                            {
                                "section": t.section or t.name,
                                "row": label,
                                "column": header,
                                "metric": n.metric,
                                "value": n.value,
                                "std": n.std,
                                "lower": n.low,
                                "upper": n.high,
                                "mark": {1: "best", 2: "second"}.get(n.mark, ""),
                                "diff": versus and versus.value,
                                "diff_lower": versus and versus.low,
                                "diff_upper": versus and versus.high,
                                "p": versus and versus.p,
                            }
                        )
    frame = pd.DataFrame.from_records(records, columns=CSV_COLUMNS)
    return frame.replace({np.nan: None})

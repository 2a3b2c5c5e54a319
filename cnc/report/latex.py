"""The tables as LaTeX a paper can use: booktabs floats sized for a text width at a
readable font, never scaled.

A table is set at \\footnotesize (8 pt in a 10-pt document) when its estimated width fits
TEXT_WIDTH_PT, else at \\scriptsize (7 pt, the smallest used). A table still too wide is
split: its numbers without their intervals first, then this benchmark's numbers with
their 95 % intervals, one column per metric; and, where a part is still too wide, its
columns in chunks, each chunk a float of its own that repeats the row labels. Long
headers break over two lines. Captions are the report's title without its number
(LaTeX numbers the floats), and the notes stand once, short, under the last part; the
whole preamble is kept as comments. Needs `\\usepackage{booktabs, amssymb}` (symbols are
math mode or plain ASCII: no font encoding is assumed).
"""

from __future__ import annotations

import re
from dataclasses import replace

from cnc.report.render import METRIC_LABELS, NOT_COMPARABLE, Table, _cell

# AAAI's text width (the paper's venue; a two-column paper's `table*`), in points, and the
# share of it the estimates may fill (they are rough: a margin keeps them inside).
TEXT_WIDTH_PT = 505.0
FILL = 0.9
FONTS = (("\\footnotesize", 8.0), ("\\scriptsize", 7.0))  # tried in this order
TABCOLSEP_PT = 4.0
HEADER_CHARS = 10  # a longer header breaks over two lines

TEX_SYMBOLS = {
    "✓": "\\checkmark{}",
    "✗": "$\\times$",
    "±": "$\\pm$",
    "†": "$^\\dagger$",
    "\u00d7": "$\\times$",  # multiplication sign
    "≤": "$\\leq$",
    "≥": "$\\geq$",
    ">": "$>$",
    "<": "$<$",
    "\u2013": "--",  # en dash
    "—": "---",
    "\u2019": "'",  # right single quotation mark
}


def escape(text: str) -> str:
    """Plain text as LaTeX (ASCII only); Markdown's **bold** becomes \\textbf."""
    for a, b in (("\\", "\\textbackslash{}"), *((c, f"\\{c}") for c in "_%&#$")):
        text = text.replace(a, b)
    for a, b in TEX_SYMBOLS.items():
        text = text.replace(a, b)
    return re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)


# Widths in em of Latin Modern (Computer Modern's metrics): what is not listed counts as
# a small letter or digit, 0.5 em (bold digits are 0.575: 0.52 keeps estimates wide).
GLYPH_EM = {".": 0.28, ",": 0.28, "[": 0.28, "]": 0.28, "(": 0.39, ")": 0.39, "-": 0.33,
            " ": 0.33, "+": 0.78, "=": 0.78, "±": 0.78, "†": 0.4, "/": 0.5, "m": 0.83,
            "w": 0.72}  # fmt: skip


def _em(text: str) -> float:
    """The width of `text` in em, roughly (capitals 0.72, see GLYPH_EM)."""
    return sum(GLYPH_EM.get(c, 0.72 if c.isupper() else 0.52) for c in text)


def _shown(cell: object) -> str:
    """What a cell shows (its Markdown without the marks)."""
    text = _cell(cell, "md") if isinstance(cell, list) else str(cell)
    return re.sub(r"\*\*|</?u>", "", text)


def _header_lines(text: str) -> list[str]:
    if len(text) <= HEADER_CHARS or " " not in text:
        return [text]
    middle = len(text) // 2
    cut = min((i for i, c in enumerate(text) if c == " "), key=lambda i: abs(i - middle))
    return [text[:cut], text[cut + 1 :]]


def width_pt(table: Table, size: float) -> float:
    """The estimated width of `table` set at `size` points."""
    columns = [[table.header[0], *(label for label, _ in table.rows)]]
    for j, header in enumerate(table.header[1:]):
        columns.append([*_header_lines(header), *(cells[j] for _, cells in table.rows)])
    widest = [max(_em(_shown(c)) for c in column) for column in columns]
    return sum(em * size + 2 * TABCOLSEP_PT for em in widest)


def _font(table: Table) -> str | None:
    for command, size in FONTS:
        if width_pt(table, size) <= FILL * TEXT_WIDTH_PT:
            return command
    return None


def _without_intervals(table: Table) -> Table:
    rows = [
        (label, [[replace(n, low=None, high=None) for n in c] if isinstance(c, list) else c
                 for c in cells])
        for label, cells in table.rows
    ]  # fmt: skip
    return replace(table, rows=rows)


def _intervals(table: Table) -> Table | None:
    """This benchmark's numbers with their intervals: one column per metric of each column
    whose numbers have intervals (None when none has)."""
    shown = [
        j for j in range(len(table.header) - 1)
        if any(isinstance(c[j], list) and any(n.low is not None for n in c[j])
               for _, c in table.rows)
    ]  # fmt: skip
    if not shown:
        return None
    header, picks = [table.header[0]], []
    for j in shown:
        groups = [c[j] for _, c in table.rows if isinstance(c[j], list)]
        for m in range(max(len(g) for g in groups)):
            metric = next((g[m].metric for g in groups if m < len(g) and g[m].metric), "")
            name, column = METRIC_LABELS.get(metric, metric), table.header[j + 1]
            if name.lower() == column.lower():  # a column per metric already: named once
                name = column
            header.append(f"{name} ({column})" if len(shown) > 1 and name != column else name)
            picks.append((j, m))
    rows = [
        (label, [[cells[j][m]] if isinstance(cells[j], list) and m < len(cells[j]) else ""
                 for j, m in picks])
        for label, cells in table.rows
    ]  # fmt: skip
    return replace(table, header=header, rows=rows)


def _chunks(table: Table) -> list[Table]:
    """The table's columns in consecutive groups that each fit at the smallest font."""
    size = FONTS[-1][1]
    parts, current = [], []
    for j in range(len(table.header) - 1):
        trial = _columns(table, [*current, j])
        if current and width_pt(trial, size) > FILL * TEXT_WIDTH_PT:
            parts.append(_columns(table, current))
            current = [j]
        else:
            current.append(j)
    parts.append(_columns(table, current))
    return parts


def _columns(table: Table, picks: list[int]) -> Table:
    header = [table.header[0], *(table.header[j + 1] for j in picks)]
    rows = [(label, [cells[j] for j in picks]) for label, cells in table.rows]
    return replace(table, header=header, rows=rows)


def parts(table: Table) -> list[tuple[Table, str]]:
    """The floats one table is set as: (part, font command)."""
    if _font(table):
        return [(table, _font(table))]
    pieces = [_without_intervals(table)]
    intervals = _intervals(table)
    if intervals is not None:
        pieces.append(intervals)
    out = []
    for piece in pieces:
        for chunk in [piece] if _font(piece) else _chunks(piece):
            out.append((chunk, _font(chunk) or FONTS[-1][0]))
    return out


def _tabular(table: Table, font: str) -> list[str]:
    lines = [font, "\\setlength{\\tabcolsep}{" + f"{TABCOLSEP_PT:g}pt" + "}"]
    lines += ["\\begin{tabular}{l" + "c" * (len(table.header) - 1) + "}", "\\toprule"]
    heads = [_header_lines(h) for h in table.header]
    for k in range(max(len(h) for h in heads)):
        lines.append(" & ".join(escape(h[k]) if k < len(h) else "" for h in heads) + " \\\\")
    lines.append("\\midrule")
    for label, cells in table.rows:
        lines.append(" & ".join([escape(label), *(_tex(c) for c in cells)]) + " \\\\")
    return [*lines, "\\bottomrule", "\\end{tabular}"]


def _tex(cell: object) -> str:
    return escape(cell) if isinstance(cell, str) else _cell(cell, "tex")


def _label(name: str, table: Table, several: bool) -> str:
    part = re.sub(r"[^a-z0-9]+", "-", (table.section or table.title).lower()).strip("-")
    return f"tab:{name}" + (f"-{part}" if several and part else "")


def latex(tables: list[Table], preamble: list[str], name: str) -> str:
    """Each table as one or more booktabs `table*` floats (see the module): caption, label
    `tab:<name>[-<section>][-<k>]`, the tabular, and under the last part its notes and,
    visibly, whether the numbers compare with the paper's."""
    title = re.sub(r"^(## )?Table \S+: ", "", preamble[0] if preamble else name)
    title = title.removeprefix("## ")
    warning = [line for line in preamble if line.startswith(NOT_COMPARABLE)]
    lines = [f"% {line}" for line in preamble]
    lines += ["% needs \\usepackage{booktabs, amssymb}; sized for a 505-pt text width", ""]
    for t in tables:
        floats = parts(t)
        for k, (part, font) in enumerate(floats, start=1):
            caption = title[:1].upper() + title[1:] + (f": {t.title}" if t.title else "")
            if len(floats) > 1:
                caption += f" (part {k} of {len(floats)}"
                caption += ", with 95 % intervals)" if _is_interval_part(part) else ")"
            label = _label(name, t, len(tables) > 1) + (f"-{k}" if len(floats) > 1 else "")
            lines += ["\\begin{table*}[tbp]", "\\centering"]
            lines += [f"\\caption{{{escape(caption)}}}", f"\\label{{{label}}}"]
            lines += _tabular(part, font)
            # under the last part, once: the warning's first sentence and the table's notes
            notes = [*(w.split(". ")[0] + "." for w in warning), *t.notes]
            if notes and k == len(floats):
                lines += ["", "\\smallskip", "\\parbox{\\linewidth}{\\scriptsize"]
                lines += [" ".join(escape(n) for n in notes) + "}"]
            lines += ["\\end{table*}", ""]
    return "\n".join(lines)


def _is_interval_part(table: Table) -> bool:
    return any(isinstance(c, list) and any(n.low is not None for n in c)
               for _, cells in table.rows for c in cells)  # fmt: skip


def fits(table: Table) -> bool:
    """Whether every float of `table` fits the text width at 7 pt or more."""
    return all(width_pt(p, FONTS[-1][1]) <= FILL * TEXT_WIDTH_PT for p, _ in parts(table))

"""What every command shares: the two consoles, user errors as one line, tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cnc.errors import UserError
from cnc.params import DEFAULT

out = Console()
err = Console(stderr=True)
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1...")]
DEFAULT_PARAMS = str(DEFAULT)
PARAMS_HELP = "params.yaml's content: a file, or the same as inline JSON."
Params = Annotated[str, typer.Option(help=PARAMS_HELP)]


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except UserError as exc:  # anything else is a bug: keep its traceback
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def print_table(title: str, columns: list[str], rows: list[list], left=(0,)) -> None:
    """A table of `rows` (any values), numbers right-aligned except the `left` columns."""
    table = Table(title=title)
    for i, column in enumerate(columns):
        # a long path folds onto a second line instead of losing its end
        table.add_column(column, justify="left" if i in left else "right", overflow="fold")
    for row in rows:
        table.add_row(*map(str, row))
    out.print(table)


def _with_interval(value: float, pair: list[float] | None) -> str:
    return f"{value:.1f}" + ("" if pair is None else f" ±{(pair[1] - pair[0]) / 2:.1f}")


def metric_rows(result: dict[str, Any]) -> list[list[str]]:
    """A metrics.json's classes and means, one row each: every metric, with ± half its
    95 % interval where the run was bootstrapped."""
    intervals = result.get("intervals") or {}
    rows = []
    for cls, values in [*result["classes"].items(), ("mean", result["mean"])]:
        pairs = intervals.get("mean") if cls == "mean" else intervals.get("classes", {}).get(cls)
        rows.append([cls, *(_with_interval(v, (pairs or {}).get(m)) for m, v in values.items())])
    return rows


def mtotal_text(result: dict[str, Any]) -> str:
    return _with_interval(result["mtotal"], (result.get("intervals") or {}).get("mtotal"))

"""What every command shares: the two consoles, user errors as one line, tables."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cnc.errors import UserError
from cnc.evaluation.replicates import interval_shown
from cnc.params import DEFAULT

# No markup: messages carry paths and settings such as `backbone.taps=[i,j,k]`, which
# rich would read as style tags and drop; styles are given as Text where wanted.
out = Console(markup=False)
err = Console(stderr=True, markup=False)
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1...")]
DEFAULT_PARAMS = str(DEFAULT)
PARAMS_HELP = "params.yaml's content: a file, or the same as inline JSON."
Params = Annotated[str, typer.Option(help=PARAMS_HELP)]
Scale = Annotated[str | None, typer.Option(help="Override the params' scale.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="section.key=value over the settings (repeatable), e.g. model.gamma=0.2"
    ),
]


class _Log:
    """Where `--log` sent the output, and the terminal that still gets a failure's reason."""

    path: Path | None = None
    terminal: IO[str] | None = None


def log_to(path: Path) -> None:
    """Send this process's output (both streams) to `path`; a failure's reason and the
    path still reach the terminal (`user_errors`). What workflow jobs use: their logs
    hold everything, the terminal one line per failed job."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    _Log.terminal = os.fdopen(os.dup(2), "w")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _Log.path = path


def announce(line: str) -> None:
    """One line naming what a job did, for the terminal of a workflow (`--log`): its log
    holds the rest. Without `--log` the command's own output says it already."""
    if _Log.terminal is not None:
        _Log.terminal.write(f"cnc: {line}\n")
        _Log.terminal.flush()


def _tell_terminal(reason: str) -> None:
    if _Log.terminal is not None:
        first = reason.strip().splitlines()[0] if reason.strip() else reason
        _Log.terminal.write(f"cnc: {first}\n  (log: {_Log.path})\n")
        _Log.terminal.flush()


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except UserError as exc:  # anything else is a bug: keep its traceback
        flagged("error:", str(exc), "bold red")
        _tell_terminal(f"error: {exc}")
        raise typer.Exit(1) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        _tell_terminal(f"{type(exc).__name__}: {exc} (a bug; its traceback is in the log)")
        raise


def flagged(flag: str, message: str, style: str) -> None:
    """`flag` in `style`, then `message` as it is, on stderr."""
    err.print(Text.assemble((flag, style), " ", message), highlight=False, soft_wrap=True)


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
    if pair is None:
        return f"{value:.1f}"
    return f"{value:.1f} {interval_shown(value, pair[0], pair[1])[0]}"


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

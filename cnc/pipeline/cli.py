"""`cnc workflow`: the experiment grid, params.yaml's check and the generated dvc.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cnc.console import DEFAULT_PARAMS, Params, Scale, err, out, user_errors

workflow_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="The experiment grid and dvc.yaml."
)


@workflow_app.command("runs")
def list_runs(
    params: Params = DEFAULT_PARAMS,
    scale: Scale = None,
    target: Annotated[str | None, typer.Option(help="Only this target's runs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Names, folders and settings.")] = False,
) -> None:
    """The runs of the grid at a scale (each shared run listed once) and their folders."""
    from cnc.params import load_params
    from cnc.pipeline import grid

    with user_errors():
        p = load_params(params, scale)
        listing = grid.describe_runs(p, target)
    if as_json:
        print(json.dumps(listing, indent=2))
    else:
        print("\n".join(entry["dir"] for entry in listing.values()))


@workflow_app.command("check")
def workflow_check(params: Params = DEFAULT_PARAMS) -> None:
    """Validate params.yaml (schema, keys given twice, every run of the grid); exit 1
    naming the key. `dvc repro` runs it whenever params.yaml changes."""
    from cnc.params import load_params
    from cnc.pipeline import grid

    with user_errors():
        runs = grid.check_grid(load_params(params))
    out.print(f"{params}: valid ({len(runs)} runs)")


@workflow_app.command("dvc")
def workflow_dvc(
    params: Params = DEFAULT_PARAMS,
    root: Annotated[Path, typer.Option(help="The project folder to write into.")] = Path("."),
    check: Annotated[bool, typer.Option(help="Only check that the files are up to date.")] = False,
) -> None:
    """Generate dvc.yaml (and one per opt-in target) from params.yaml's grid, or --check
    that they are current."""
    from cnc.params import load_params
    from cnc.pipeline import dvcfile

    with user_errors():
        stale = dvcfile.write(load_params(params), root, check=check)
    if check and stale:
        err.print(f"stale: {', '.join(map(str, stale))}; run `cnc workflow dvc` to regenerate")
        raise typer.Exit(1)
    out.print(f"written {', '.join(map(str, stale))}" if stale else "up to date")

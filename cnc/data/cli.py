"""`cnc data`: prepare, check and generate datasets (cnc.data.prepare)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cnc.console import DEFAULT_PARAMS, Params, announce, flagged, out, print_table, user_errors
from cnc.errors import UsageError

data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Prepare, check and generate datasets."
)


def _print_counts(counts: dict[str, dict], title: str) -> None:
    columns = ["class", "train", "test good", "test anomalous", "defect types", "pixels"]
    rows = [
        [
            cls,
            c["train"],
            c["test_good"],
            c["test_anomalous"],
            ", ".join(c["defect_types"]),
            ", ".join(c.get("pixel_formats", [])),
        ]
        for cls, c in counts.items()
    ]
    print_table(title, columns, rows, left=(0, 4, 5))


@data_app.command("synthetic")
def data_synthetic(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (MVTec layout).")],
    seed: int | None = None,
    image_size: int | None = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated subset.")] = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    force: Annotated[bool, typer.Option(help="Replace an existing different folder.")] = False,
) -> None:
    """Generate the deterministic synthetic benchmark (same seed, same bytes); options not
    given keep the defaults of the workflow's synthetic set."""
    from cnc.data.prepare import CONTACT_SHEET, synthetic
    from cnc.data.synthetic import SyntheticSpec

    given = {
        "seed": seed,
        "image_size": image_size,
        "classes": [c.strip() for c in classes.split(",") if c.strip()] if classes else None,
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
    }
    with user_errors():
        spec = SyntheticSpec(**{k: v for k, v in given.items() if v is not None})
        manifest = synthetic(spec, out_dir, force=force)
    _print_counts(manifest["counts"], f"synthetic benchmark in {out_dir}")
    out.print(f"contact sheet: {out_dir / CONTACT_SHEET}")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="mvtec, visa, mvtec_ad2, mpdd, btad or realiad")],
    root: Annotated[Path, typer.Option(help="Folder for the prepared dataset.")],
    url: Annotated[str | None, typer.Option(help="Mirror URL; the hash stays pinned.")] = None,
    downloads: Annotated[
        Path | None, typer.Option(help="Archive folder (default: ROOT/../downloads).")
    ] = None,
    raw: Annotated[
        Path | None,
        typer.Option(help="The extracted raw folder (placed by hand): converted, kept."),
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="Real-IAD: a comma-separated subset of its classes.")
    ] = None,
    resolution: Annotated[
        str | None, typer.Option(help="Real-IAD: 256, 512, 1024 or raw (default 256).")
    ] = None,
    skip_count_check: Annotated[
        bool, typer.Option(help="Accept class counts that differ from the published ones.")
    ] = False,
) -> None:
    """Download (resumable, sha256-verified) or take the raw folder, extract, convert to
    the MVTec layout and verify a public dataset (README: Data)."""
    from cnc.data.prepare import REMOTE, fetch

    options = {
        "classes": [c.strip() for c in classes.split(",") if c.strip()] if classes else None,
        "resolution": resolution,
    }
    with user_errors():
        if name not in REMOTE:
            raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(REMOTE)}")
        manifest = fetch(
            REMOTE[name], root, url=url, downloads=downloads, check_counts=not skip_count_check,
            raw=raw, options={k: v for k, v in options.items() if v is not None},
        )  # fmt: skip
    _print_counts(manifest["counts"], f"{name} in {root}")


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="An MVTec-layout dataset folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    manifest: Annotated[
        Path | None, typer.Option(help="Compare with this manifest (default: ROOT/manifest.json).")
    ] = None,
) -> None:
    """Validate a dataset folder and print per-class counts; exit 1 on any problem."""
    from cnc.data.manifest import check_against_manifest

    with user_errors():
        report = check_against_manifest(root, manifest)
    result = report.to_dict()
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        if result["classes"]:
            _print_counts(result["classes"], f"{root}")
        for problem in report.problems:
            flagged("problem:", problem, "red")
        for warning in report.warnings:
            flagged("warning:", warning, "yellow")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="a data.<name> of params.yaml, e.g. mvtec")],
    params: Params = DEFAULT_PARAMS,
    settings: Annotated[
        str | None,
        typer.Option(
            help="Instead of --params: params.yaml's data section, or its part "
            '{"downloads": ..., "<name>": {...}}, as a file or inline JSON.'
        ),
    ] = None,
    record: Annotated[
        Path | None, typer.Option(help="Also write a summary JSON here (workflow output).")
    ] = None,
) -> None:
    """Prepare a dataset as params.yaml describes it (the workflow's data step)."""
    from cnc.data.prepare import prepare_dataset
    from cnc.params import load_params, read_structured

    with user_errors():
        if settings is None:
            data = load_params(params)["data"]
        else:
            data = read_structured(settings, "--settings")
        root, manifest = prepare_dataset(name, data, record)
    _print_counts(manifest["counts"], f"{name} in {root}")
    announce(f"prepared {name}: {len(manifest['counts'])} classes in {root}")

"""The `cnc` command: one entry point for every step of the pipeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cnc.config import (
    ConfigError,
    data_section,
    dataset_root,
    dataset_url,
    downloads_dir,
    synthetic_spec,
)
from cnc.data import prepare as prep
from cnc.data.check import check_root
from cnc.data.download import DownloadError
from cnc.data.layout import LayoutError
from cnc.data.manifest import MANIFEST, manifest_differences
from cnc.data.registry import DATASET_NAMES, REMOTE
from cnc.data.synthetic import CLASSES, SyntheticSpec
from cnc.data.visa import VisaError
from cnc.io import write_json
from cnc.metrics import METRICS

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Prepare, check and generate datasets.")
app.add_typer(data_app, name="data")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(bench_app, name="bench")

out = Console()
err = Console(stderr=True)

# Errors caused by the user's input or environment: shown as one clear message, exit 1.
USER_ERRORS = (
    ConfigError,
    DownloadError,
    FileExistsError,
    FileNotFoundError,
    LayoutError,
    prep.DataError,
    VisaError,
    ValueError,
)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except USER_ERRORS as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _print_counts(counts: dict[str, dict], title: str) -> None:
    table = Table(title=title)
    for column in ("class", "train", "test good", "test anomalous", "defect types"):
        table.add_column(column, justify="left" if column in ("class", "defect types") else "right")
    for cls, c in counts.items():
        table.add_row(
            cls,
            str(c["train"]),
            str(c["test_good"]),
            str(c["test_anomalous"]),
            ", ".join(c["defect_types"]),
        )
    out.print(table)


@data_app.command("synthetic")
def data_synthetic(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (MVTec layout).")],
    seed: int = 0,
    image_size: int = 128,
    classes: Annotated[str, typer.Option(help="Comma-separated subset.")] = ",".join(CLASSES),
    train_per_class: int = 32,
    test_per_class: int = 24,
    force: Annotated[bool, typer.Option(help="Replace an existing different folder.")] = False,
) -> None:
    """Generate the deterministic synthetic benchmark (same seed, same bytes)."""
    with user_errors():
        spec = SyntheticSpec(
            seed=seed,
            image_size=image_size,
            classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
            train_per_class=train_per_class,
            test_per_class=test_per_class,
        )
        manifest = prep.synthetic(spec, out_dir, force=force)
    _print_counts(manifest["counts"], f"synthetic benchmark in {out_dir}")
    out.print(f"contact sheet: {out_dir / prep.CONTACT_SHEET}")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="mvtec or visa")],
    root: Annotated[Path, typer.Option(help="Folder for the prepared dataset.")],
    url: Annotated[str | None, typer.Option(help="Mirror URL; the hash stays pinned.")] = None,
    downloads: Annotated[
        Path | None, typer.Option(help="Archive folder (default: ROOT/../downloads).")
    ] = None,
    skip_count_check: Annotated[
        bool, typer.Option(help="Accept class counts that differ from the published ones.")
    ] = False,
) -> None:
    """Download (resumable, sha256-verified), extract, convert and verify MVTec AD or VisA."""
    with user_errors():
        if name not in prep.REMOTE:
            raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(prep.REMOTE)}")
        manifest = prep.fetch(
            name, root, url=url, downloads=downloads, check_counts=not skip_count_check
        )
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
    with user_errors():
        report = check_root(root)
        manifest = manifest or (root / MANIFEST)
        if report.classes and manifest.is_file():
            report.problems.extend(manifest_differences(root, manifest))
    result = report.to_dict()
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        _print_counts(result["classes"], f"{root}")
        for problem in report.problems:
            err.print(f"[red]problem:[/] {problem}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="synthetic, mvtec, visa or folder")],
    params: Annotated[Path, typer.Option(help="The workflow settings.")] = Path("params.yaml"),
    settings: Annotated[
        str | None, typer.Option(help="JSON of params.yaml's data section (used by Snakemake).")
    ] = None,
    record: Annotated[
        Path | None, typer.Option(help="Also write a summary JSON here (workflow output).")
    ] = None,
) -> None:
    """Prepare a dataset as params.yaml describes it (the workflow's data step)."""
    with user_errors():
        data = data_section(params, settings)
        root = dataset_root(data, name)
        if name == "synthetic":
            # Replaces an older synthetic set of other settings, never a folder it did not make.
            manifest = prep.synthetic(synthetic_spec(data), root, force=prep.is_synthetic(root))
        elif name == "folder":
            manifest = prep.verify_root(root, "folder", counts=None)
        elif name in REMOTE:
            manifest = prep.fetch(
                REMOTE[name], root, url=dataset_url(data, name), downloads=downloads_dir(data)
            )
        else:
            raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASET_NAMES)}")
        if record is not None:
            summary = {
                "dataset": name,
                "root": str(root),
                "counts": manifest["counts"],
                "files": len(manifest["files"]),
            }
            write_json(record, summary)
    _print_counts(manifest["counts"], f"{name} in {root}")


@app.command("evaluate")
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder with maps/ from inference.")],
    heatmaps: Annotated[bool, typer.Option(help="Also draw per-class heat maps.")] = True,
) -> None:
    """Five metrics per class, class means and mTotal from a run's saved maps."""
    from cnc.evaluate import evaluate_run
    from cnc.maps import MapsError
    from cnc.metrics import MetricError

    with user_errors():
        try:
            result = evaluate_run(run_dir, heatmaps=heatmaps)
        except (MapsError, MetricError) as exc:
            raise ValueError(str(exc)) from None
    table = Table(title=f"{result['run']} (percent)")
    table.add_column("class")
    for key in METRICS:
        table.add_column(key, justify="right")
    for cls, values in [*result["classes"].items(), ("mean", result["mean"])]:
        table.add_row(cls, *(f"{values[k]:.1f}" for k in METRICS))
    out.print(table)
    out.print(f"mTotal {result['mtotal']:.1f}; written {run_dir / 'metrics.json'}")


@bench_app.command("metrics")
def bench_metrics(
    seed: int = 0,
    size: Annotated[int, typer.Option(help="Map side in pixels.")] = 256,
    scale: Annotated[float, typer.Option(help="Fraction of MVTec AD's test counts.")] = 1.0,
) -> None:
    """Seconds and peak memory of our metrics vs a straightforward reference, same data."""
    from cnc.bench import metrics as bench

    ours, reference = bench.run(seed, size, scale)
    table = Table(title=f"all five metrics, 15 MVTec-shaped classes, {size}x{size} maps")
    for column in ("implementation", "seconds", "peak MB", "speed-up"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for m in (ours, reference):
        speed = reference.seconds / m.seconds
        table.add_row(m.name, f"{m.seconds:.2f}", f"{m.peak_mb:.0f}", f"{speed:.2f}x")
    out.print(table)
    out.print(f"largest absolute difference: {bench.max_difference(ours, reference):.2e}")


def main() -> None:
    app()

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
    data_section,
    dataset_root,
    dataset_url,
    downloads_dir,
    synthetic_spec,
)
from cnc.data import prepare as prep
from cnc.data.check import check_root
from cnc.data.manifest import MANIFEST, manifest_differences
from cnc.data.registry import DATASET_NAMES, REMOTE
from cnc.data.synthetic import CLASSES, SyntheticSpec
from cnc.errors import UsageError, UserError
from cnc.io import write_json

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Prepare, check and generate datasets.")
app.add_typer(data_app, name="data")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print figures.")
app.add_typer(bench_app, name="bench")
workflow_app = typer.Typer(no_args_is_help=True, help="The experiment grid and dvc.yaml.")
app.add_typer(workflow_app, name="workflow")

out = Console()
err = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except UserError as exc:  # anything else is a bug: keep its traceback
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
            raise UsageError(f"unknown dataset {name!r}; choose one of {sorted(prep.REMOTE)}")
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
            raise UsageError(f"unknown dataset {name!r}; choose one of {list(DATASET_NAMES)}")
        if record is not None:
            summary = {
                "dataset": name,
                "root": str(root),
                "counts": manifest["counts"],
                "files": len(manifest["files"]),
            }
            write_json(record, summary)
    _print_counts(manifest["counts"], f"{name} in {root}")


def _train_config(
    settings: str | None,
    data_root: Path | None,
    dataset: str,
    backbone: str,
    weights: str,
    resolution: int,
    taps: str | None,
    mlf: bool,
    cnc: bool,
    experts: int,
    top_k: int,
    epochs: int | None,
    seed: int,
    classes: str | None,
    batch_size: int,
    lr: float,
    checkpoint_every: int,
    cache: str,
):
    from cnc.settings import PAPER_EPOCHS, ArchConfig, ModelConfig, TrainConfig

    if settings is not None:
        try:
            return TrainConfig.from_dict(json.loads(settings))
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise UsageError(f"--settings: not a run's settings JSON ({exc})") from None
    if data_root is None:
        raise UsageError("--data-root: required (an MVTec-layout folder), or pass --settings")
    if epochs is None:
        if dataset not in PAPER_EPOCHS:
            raise UsageError(f"--epochs: required for dataset {dataset!r}")
        epochs = PAPER_EPOCHS[dataset]
    tap_list = None
    if taps:
        try:
            tap_list = tuple(int(t) for t in taps.split(","))
        except ValueError:
            raise UsageError(f"--taps {taps!r}: expected block numbers like 8,16,24") from None
    return TrainConfig(
        arch=ArchConfig(
            backbone=backbone,
            weights=weights,
            resolution=resolution,
            taps=tap_list,
            model=ModelConfig(mlf=mlf, cnc=cnc, moe_experts=experts, moe_top_k=top_k),
            seed=seed,
        ),
        dataset=dataset,
        data_root=str(data_root),
        epochs=epochs,
        classes=tuple(c.strip() for c in classes.split(",")) if classes else None,
        batch_size=batch_size,
        lr=lr,
        checkpoint_every=checkpoint_every,
        cache=cache,
    )


def _grid_run(params: Path, name: str) -> tuple[str, tuple[int, float, int]]:
    """A grid run's training settings (JSON) and inference settings, from params.yaml."""
    from cnc import grid
    from cnc.config import workflow_settings

    p = workflow_settings(params, None)
    points = grid.check_grid(p)
    if name not in points:
        raise UsageError(f"--run {name}: not a run of the grid; `cnc workflow runs` lists them")
    i = grid.infer_config(p)
    settings = json.dumps(grid.train_config(p, points[name]).to_dict())
    return settings, (i.map_size, i.sigma, i.batch_size)


@app.command("train")
def train(
    out_dir: Annotated[Path, typer.Argument(help="The run folder (checkpoints, log, model).")],
    data_root: Annotated[Path | None, typer.Option(help="MVTec-layout dataset folder.")] = None,
    dataset: Annotated[str, typer.Option(help="Dataset name (mvtec, visa, synthetic...).")] = (
        "mvtec"
    ),
    backbone: Annotated[str, typer.Option(help="open_clip name, or cnc-tiny-<name>.")] = (
        "ViT-L-14-336"
    ),
    weights: Annotated[str, typer.Option(help="openai, random, or a checkpoint file.")] = (
        "openai"
    ),
    resolution: int = 224,
    taps: Annotated[str | None, typer.Option(help="Three block numbers, e.g. 8,16,24.")] = None,
    mlf: Annotated[bool, typer.Option(help="Multi-layer fusion (eq. 12).")] = True,
    cnc: Annotated[bool, typer.Option(help="Cross-modal normality constraint.")] = True,
    experts: Annotated[int, typer.Option(help="MoE experts T; 0 = no MoE.")] = 5,
    top_k: Annotated[int, typer.Option(help="Experts per token K (K <= T).")] = 2,
    epochs: Annotated[
        int | None, typer.Option(help="Default: 250 for mvtec, 200 for visa.")
    ] = None,
    seed: int = 0,
    classes: Annotated[str | None, typer.Option(help="Comma-separated subset.")] = None,
    batch_size: int = 8,
    lr: float = 1e-3,
    checkpoint_every: int = 10,
    cache: Annotated[str, typer.Option(help="Feature cache: auto, memory, disk, off.")] = "auto",
    settings: Annotated[
        str | None, typer.Option(help="A run's settings as JSON (the workflow's form).")
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="A run of the grid by name, settings from --params.")
    ] = None,
    params: Annotated[Path, typer.Option(help="With --run: the workflow settings.")] = Path(
        "params.yaml"
    ),
    resume: Annotated[bool, typer.Option(help="Continue an unfinished run.")] = False,
    force: Annotated[
        bool, typer.Option(help="Start over, replacing a finished or different run.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1...")] = "auto",
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
    maps: Annotated[
        bool, typer.Option(help="Then write the test maps, as `cnc infer` (one process).")
    ] = False,
    map_size: Annotated[int, typer.Option(help="With --maps: evaluation size.")] = 256,
    sigma: Annotated[float, typer.Option(help="With --maps: Gaussian smoothing.")] = 4.0,
    infer_batch_size: Annotated[int, typer.Option(help="With --maps: batch size.")] = 16,
) -> None:
    """Train one grid point on all classes jointly (the multi-class setting).

    With --resume, an unfinished run of the same settings continues and a finished run
    of the same settings and code is reused; --force replaces anything else.
    """
    from cnc.infer import infer_run, pick_device
    from cnc.settings import InferConfig
    from cnc.train import train as run_training

    with user_errors():
        if run is not None:
            settings, (map_size, sigma, infer_batch_size) = _grid_run(params, run)
        config = _train_config(
            settings, data_root, dataset, backbone, weights, resolution, taps, mlf, cnc,
            experts, top_k, epochs, seed, classes, batch_size, lr, checkpoint_every, cache,
        )  # fmt: skip
        infer_config = InferConfig(map_size, sigma, infer_batch_size) if maps else None
        state = run_training(
            config, out_dir, resume=resume, force=force, device=pick_device(device),
            progress=progress,
        )  # fmt: skip
        last = state["history"][-1]
        out.print(f"{out_dir}: epoch {state['epoch']}, distill {last['distill']:.4g}")
        if infer_config is not None:
            infer_run(out_dir, infer_config, device=device, progress=progress)
            out.print(f"maps written to {out_dir / 'maps'}")


@app.command("infer")
def infer(
    run_dir: Annotated[Path, typer.Argument(help="A trained run folder.")],
    map_size: Annotated[int, typer.Option(help="Evaluation size of the maps.")] = 256,
    sigma: Annotated[float, typer.Option(help="Gaussian smoothing, map pixels.")] = 4.0,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> None:
    """Anomaly maps of every test image, saved per class for `cnc evaluate`."""
    from cnc.infer import infer_run
    from cnc.settings import InferConfig

    with user_errors():
        config = InferConfig(map_size=map_size, sigma=sigma, batch_size=batch_size)
        summary = infer_run(run_dir, config, device=device, progress=progress)
    counts = ", ".join(f"{c} {n}" for c, n in summary["classes"].items())
    out.print(f"maps written to {run_dir / 'maps'}: {counts}")


@app.command("predict")
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A trained run folder.")],
    images: Annotated[list[Path], typer.Argument(help="Images to score.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the overlays.")] = Path(
        "predictions"
    ),
    device: str = "auto",
    overwrite: bool = False,
) -> None:
    """Score new images with a trained run and write heat-map overlays."""
    from cnc.predict import predict as run_predict

    with user_errors():
        results = run_predict(run_dir, images, out_dir, device=device, overwrite=overwrite)
    table = Table(title=f"anomaly scores ({run_dir.name})")
    for column in ("image", "score", "x max normal", "overlay"):
        table.add_column(column, justify="right" if column in ("score", "x max normal") else "left")
    for r in results:
        table.add_row(str(r.image), f"{r.score:.4g}", f"{r.relative:.2f}", str(r.overlay))
    out.print(table)


@app.command("evaluate")
def evaluate(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders with maps/ from inference.")],
    heatmaps: Annotated[bool, typer.Option(help="Also draw per-class heat maps.")] = True,
    heatmaps_for: Annotated[
        list[str] | None,
        typer.Option(help="Draw heat maps only for these run names (repeatable)."),
    ] = None,
) -> None:
    """Five metrics per class, class means and mTotal from runs' saved maps.

    Several runs are evaluated in one process (the workflow evaluates the grid at once).
    """
    from cnc.evaluate import evaluate_run
    from cnc.metrics import METRICS

    for run_dir in run_dirs:
        draw = heatmaps and (heatmaps_for is None or run_dir.name in heatmaps_for)
        with user_errors():
            result = evaluate_run(run_dir, heatmaps=draw)
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


@bench_app.command("train")
def bench_train(
    backbone: str = "cnc-tiny-ViT-B-16",
    resolution: int = 128,
    images: Annotated[int, typer.Option(help="Training images (synthetic set).")] = 192,
    epochs: Annotated[int, typer.Option(help="Epochs timed per variant.")] = 2,
    batch_size: int = 8,
    device: str = "auto",
    paper: Annotated[
        bool,
        typer.Option(help="ViT-L-14-336 (random weights) at 224 px on 3629 images (GPU)."),
    ] = False,
    data_root: Annotated[Path | None, typer.Option(help="Time on this dataset instead.")] = None,
    project: Annotated[int, typer.Option(help="Epochs to project the run time to.")] = 250,
) -> None:
    """Seconds per epoch with the feature cache vs re-encoding every step, one run."""
    from cnc.bench import train as bench
    from cnc.infer import pick_device

    if paper:
        backbone, resolution, images = "ViT-L-14-336", 224, bench.MVTEC_TRAIN_IMAGES
    device = pick_device(device)
    with user_errors():
        timings, n = bench.run(backbone, resolution, images, epochs, batch_size, device, data_root)
    table = Table(title=f"{backbone} at {resolution} px, {n} training images, {device}")
    columns = ("variant", "setup s", "s / epoch", f"{project} epochs", "speed-up", "peak GPU MB")
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    slow = timings[-1]
    for t in timings:
        peak = "-" if t.peak_gpu_mb is None else f"{t.peak_gpu_mb:.0f}"
        hours = t.projected_s(project) / 3600
        speed = slow.projected_s(project) / t.projected_s(project)
        table.add_row(
            t.name, f"{t.setup_s:.2f}", f"{t.epoch_s:.3f}", f"{hours:.2f} h", f"{speed:.1f}x", peak
        )
    out.print(table)
    out.print(f"peak process RSS {bench.peak_rss_mb():.0f} MB")


@app.command("report")
def report(
    params: Annotated[Path, typer.Option(help="The workflow settings.")] = Path("params.yaml"),
    settings: Annotated[
        str | None, typer.Option(help="The settings as JSON (used by the workflow).")
    ] = None,
    scale: Annotated[str | None, typer.Option(help="Override the settings' scale.")] = None,
    runs: Annotated[Path | None, typer.Option(help="Default: results/runs/<scale>.")] = None,
    reports: Annotated[Path | None, typer.Option(help="Default: results/reports/<scale>.")] = None,
    figures: Annotated[Path | None, typer.Option(help="Default: results/figures/<scale>.")] = None,
) -> None:
    """Tables 1-4 and the figures, from the runs' saved metrics.json files only."""
    from cnc import grid
    from cnc.config import workflow_settings
    from cnc.report.build import write_reports

    with user_errors():
        p = workflow_settings(params, settings, scale)
        s = p["scale"]
        written = write_reports(
            p,
            runs or Path(grid.RUNS_DIR) / s,
            reports or Path(grid.REPORTS_DIR) / s,
            figures or Path(grid.FIGURES_DIR) / s,
        )
    out.print(f"written {len(written)} files; start at {written[0].parent / 'README.md'}")


@app.command("compare")
def compare(
    runs: Annotated[
        list[Path] | None, typer.Argument(help="Run folders; the first is the reference.")
    ] = None,
    paper: Annotated[
        str | None, typer.Option(help="Compare one run with the paper: table1 or table3.")
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="A whole table (table1..table4) of the grid against the paper."),
    ] = None,
    params: Annotated[Path, typer.Option(help="With --table: the settings.")] = Path("params.yaml"),
    scale: Annotated[str | None, typer.Option(help="With --table: override the scale.")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Also write the Markdown.")] = None,
) -> None:
    """Markdown of per-class and mean differences between runs, between a run and the
    paper, or between a table of the grid and the paper."""
    from cnc.io import write_text
    from cnc.report.compare import compare_runs, compare_with_paper

    runs = runs or []
    with user_errors():
        if table is not None:
            from cnc import grid
            from cnc.config import workflow_settings
            from cnc.report.render import markdown
            from cnc.report.tables import TITLES, build_table, preamble

            p = workflow_settings(params, None, scale)
            if table not in TITLES:
                raise UsageError(f"--table {table!r}: choose one of {', '.join(TITLES)}")
            runs_dir = runs[0] if runs else Path(grid.RUNS_DIR) / p["scale"]
            tables, results = build_table(p, table, runs_dir)
            text = markdown(tables, preamble(p, TITLES[table], results))
        elif paper is not None:
            if len(runs) != 1:
                raise UsageError("--paper compares exactly one run with the paper")
            text = compare_with_paper(runs[0], paper)
        else:
            text = compare_runs(runs)
        if out_file is not None:
            write_text(out_file, text)
    print(text)


@workflow_app.command("runs")
def list_runs(
    params: Annotated[Path, typer.Option(help="The workflow settings.")] = Path("params.yaml"),
    scale: Annotated[str | None, typer.Option(help="Override the settings' scale.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Names, folders and settings.")] = False,
) -> None:
    """The runs of the grid at a scale (each shared run listed once) and their folders."""
    from cnc import grid
    from cnc.config import workflow_settings

    with user_errors():
        p = workflow_settings(params, None, scale)
        points = grid.check_grid(p)
    if as_json:
        listing = {
            name: {
                "dir": grid.run_dir(p, name),
                "train": grid.train_config(p, point).to_dict(),
            }
            for name, point in points.items()
        }
        print(json.dumps(listing, indent=2))
        return
    for name in points:
        print(grid.run_dir(p, name))


@workflow_app.command("dvc")
def workflow_dvc(
    params: Annotated[Path, typer.Option(help="The workflow settings.")] = Path("params.yaml"),
    out_file: Annotated[Path, typer.Option("--out", help="Where to write.")] = Path("dvc.yaml"),
    check: Annotated[bool, typer.Option(help="Only check that the file is up to date.")] = False,
) -> None:
    """Generate dvc.yaml from params.yaml's grid (or --check that it is current)."""
    from cnc import dvcfile
    from cnc.config import workflow_settings
    from cnc.io import write_text

    with user_errors():
        text = dvcfile.render(workflow_settings(params, None))
    if check:
        current = out_file.read_text() if out_file.is_file() else ""
        if current != text:
            err.print(f"{out_file} is stale; run `cnc workflow dvc` to regenerate it")
            raise typer.Exit(1)
        out.print(f"{out_file} is up to date")
        return
    write_text(out_file, text)
    out.print(f"written {out_file}")


def main() -> None:
    app()

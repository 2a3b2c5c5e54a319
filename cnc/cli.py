"""The `cnc` command: one entry point for every step of the pipeline.

Each command parses its arguments, calls one library function and prints the result.
Settings are never given a default here: a run's defaults live in cnc/settings.py, and
`--settings` (a file or inline JSON) and `--set section.key=value` only override them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cnc import warm
from cnc.bench.cli import bench_app
from cnc.console import (
    DEFAULT_PARAMS,
    PARAMS_HELP,
    Device,
    Params,
    err,
    flagged,
    log_to,
    metric_rows,
    mtotal_text,
    out,
    print_table,
    user_errors,
)
from cnc.errors import UsageError
from cnc.experiments import DEFAULT_TARGET

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode="markdown"
)
data_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Prepare, check and generate datasets."
)


@app.callback()
def _options(
    log: Annotated[
        Path | None,
        typer.Option(
            help="Write all output to this file; a failure's reason still goes to the terminal "
            "(the workflow's jobs use it)."
        ),
    ] = None,
) -> None:
    if log is not None:
        log_to(log)


app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
workflow_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="The experiment grid and dvc.yaml."
)
app.add_typer(workflow_app, name="workflow")

Scale = Annotated[str | None, typer.Option(help="Override the params' scale.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="section.key=value over the settings (repeatable), e.g. model.gamma=0.2"
    ),
]


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


# ----------------------------------------------------------------------------- data


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
    from cnc.data.prepare import REMOTE, fetch

    with user_errors():
        if name not in REMOTE:
            raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(REMOTE)}")
        manifest = fetch(
            REMOTE[name], root, url=url, downloads=downloads, check_counts=not skip_count_check
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
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="synthetic, mvtec, visa or folder")],
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


# ----------------------------------------------------------------------------- runs


@app.command("train")
def train(
    run_dir: Annotated[Path, typer.Argument(help="The run folder (checkpoints, log, model).")],
    run: Annotated[
        str | None, typer.Option(help="A run of the grid by name; settings from --params.")
    ] = None,
    params: Params = DEFAULT_PARAMS,
    settings: Annotated[
        str | None,
        typer.Option(help="A run's settings (as in its config.json): a file or inline JSON."),
    ] = None,
    overrides: Overrides = None,
    weights: Annotated[
        str | None,
        typer.Option(
            help="Encoder weights: a checkpoint file, openai or random (backbone.weights)."
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue an unfinished run.")] = False,
    force: Annotated[
        bool, typer.Option(help="Start over, replacing a finished or different run.")
    ] = False,
    maps: Annotated[bool, typer.Option(help="Then write the test maps, as `cnc infer`.")] = True,
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
) -> None:
    """Train one run on all classes jointly (multi-class), then write its test maps.

    Settings: the defaults (the paper's main configuration), over them a run of the grid
    (--run) or a settings file (--settings), over those --set. --resume continues an
    unfinished run of the same settings and reuses a finished one of the same settings
    and code; --force replaces anything else.
    """
    from cnc.grid import job_settings
    from cnc.job import run_job

    given = [*(overrides or []), *([f"backbone.weights={weights}"] * (weights is not None))]
    with user_errors():
        job = job_settings(run, params, settings, given)
        result = run_job(job, run_dir, resume, force, maps, device, progress)
    out.print(result.summary(run_dir), soft_wrap=True)


@app.command("infer")
def infer(
    run_dir: Annotated[Path, typer.Argument(help="A trained run folder.")],
    overrides: Overrides = None,
    device: Device = "auto",
    progress: bool = True,
) -> None:
    """Anomaly maps of every test image, saved per class for `cnc evaluate`, with the
    run's inference settings (`--set infer.map_size=256` overrides them)."""
    from cnc.job import infer_job

    with user_errors():
        summary = infer_job(run_dir, overrides or [], device, progress)
    counts = ", ".join(f"{c} {n}" for c, n in summary["classes"].items())
    out.print(f"maps written to {run_dir}: {counts}")


@app.command("predict")
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A trained run folder.")],
    inputs: Annotated[list[Path], typer.Argument(help="Images, or folders of images.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Overlays (mirroring the inputs) and scores.csv/json.")
    ] = Path("predictions"),
    cls: Annotated[
        str | None, typer.Option("--class", help="The images' class (default: from the path).")
    ] = None,
    quantile: Annotated[
        float | None,
        typer.Option(
            "--threshold-quantile",
            help="Call an image anomalous above this quantile of its class's normal "
            "training image scores (1.0: above all of them).",
        ),
    ] = None,
    device: Device = "auto",
    overwrite: bool = False,
) -> None:
    """Score new images with a trained run, as its evaluation did; write heat-map overlays
    on the class's scale of normal training scores, and scores.csv/json."""
    from cnc.predict import SCORES_CSV, SCORES_JSON, collect_images
    from cnc.predict import predict as run_predict

    with user_errors():
        results = run_predict(run_dir, inputs, out_dir, device, overwrite, cls, quantile)
    base = collect_images(inputs)[1]
    columns = ["image", "scale", "score", "x max normal"]
    columns += ["threshold", "decision"] if quantile is not None else []
    rows = []
    for r in results:
        row = [r.image.relative_to(base), r.scale, f"{r.score:.4f}", f"{r.relative:.2f}"]
        if r.threshold is not None:
            row += [f"{r.threshold:.4f}", "anomalous" if r.anomalous else "normal"]
        rows.append(row)
    print_table(f"anomaly scores ({run_dir.name})", columns, rows, left=(0, 1, 5))
    out.print(
        f"overlays and {SCORES_CSV}, {SCORES_JSON} in {out_dir}; scale: normal training "
        "images of the class (median pixel to highest image score)",
        soft_wrap=True,
    )


@app.command("evaluate")
def evaluate(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders with maps/ from inference.")],
    params: Annotated[str | None, typer.Option(help=f"Settings from {PARAMS_HELP}")] = None,
    settings: Annotated[
        str | None, typer.Option(help="An `evaluate` section: a file or inline JSON.")
    ] = None,
    overrides: Overrides = None,
    bootstrap: Annotated[
        int | None,
        typer.Option(help="Bootstrap replicates per class for the intervals; 0 = none."),
    ] = None,
    heatmaps: Annotated[bool, typer.Option(help="Also draw per-class heat maps.")] = True,
    heatmaps_for: Annotated[
        list[str] | None,
        typer.Option(help="Draw heat maps only for these run names (repeatable)."),
    ] = None,
) -> None:
    """Five metrics per class, class means and mTotal from runs' saved maps (smoothed
    with `evaluate.sigma`; --set evaluate.sigma=2 overrides), their 95 % bootstrap
    intervals (`evaluate.bootstrap` replicates; --bootstrap overrides) and the metrics
    per defect type."""
    from cnc.evaluation.evaluate import evaluate_run
    from cnc.evaluation.metrics import METRICS
    from cnc.grid import evaluate_job_settings

    given = [*(overrides or []), *([f"evaluate.bootstrap={bootstrap}"] * (bootstrap is not None))]
    with user_errors():
        config = evaluate_job_settings(params, settings, given)
    for run_dir in run_dirs:
        draw = heatmaps and (heatmaps_for is None or run_dir.name in heatmaps_for)
        with user_errors():
            result = evaluate_run(run_dir, config, heatmaps=draw)
        print_table(f"{result['run']} (percent)", ["class", *METRICS], metric_rows(result))
        out.print(f"mTotal {mtotal_text(result)}; written to {run_dir}")


# ----------------------------------------------------------------------------- reports


@app.command("report")
def report(
    params: Params = DEFAULT_PARAMS,
    scale: Scale = None,
    runs: Annotated[Path | None, typer.Option(help="Default: results/runs/<scale>.")] = None,
    reports: Annotated[Path | None, typer.Option(help="Default: results/reports/<scale>.")] = None,
    figures: Annotated[Path | None, typer.Option(help="Default: results/figures/<scale>.")] = None,
    target: Annotated[str, typer.Option(help="The experiments of this workflow target.")] = (
        DEFAULT_TARGET
    ),
) -> None:
    """Every table and figure of the experiment registry (of one workflow target), from
    the runs' saved metrics.json files only."""
    from cnc.params import load_params
    from cnc.report.build import write_reports

    with user_errors():
        written = write_reports(load_params(params, scale), runs, reports, figures, target)
    out.print(f"written {len(written)} files in {written[0].parent}")


@app.command("compare")
def compare(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run folders (the first is the reference); with --table: a runs folder."
        ),
    ] = None,
    paper: Annotated[
        str | None, typer.Option(help="Compare one run with the paper: table1 or table3.")
    ] = None,
    table: Annotated[
        str | None, typer.Option(help="A whole table of the grid against the paper, e.g. table2.")
    ] = None,
    by_defect: Annotated[
        bool, typer.Option("--by-defect", help="Runs per class and defect type.")
    ] = False,
    params: Params = DEFAULT_PARAMS,
    scale: Scale = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Also write the Markdown.")] = None,
) -> None:
    """Markdown of per-class and mean differences between runs (with paired bootstrap
    intervals and p-values), per defect type, between a run and the paper, or between a
    table of the grid and the paper."""
    from cnc.io import write_text
    from cnc.report.compare import compare as compare_text

    with user_errors():
        text = compare_text(runs or [], paper, table, params, scale, by_defect)
        if out_file is not None:
            write_text(out_file, text)
    print(text)


# ----------------------------------------------------------------------------- workflow


@workflow_app.command("runs")
def list_runs(
    params: Params = DEFAULT_PARAMS,
    scale: Scale = None,
    target: Annotated[str | None, typer.Option(help="Only this target's runs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Names, folders and settings.")] = False,
) -> None:
    """The runs of the grid at a scale (each shared run listed once) and their folders."""
    from cnc import grid
    from cnc.params import load_params

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
    from cnc import grid
    from cnc.params import load_params

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
    from cnc import dvcfile
    from cnc.params import load_params

    with user_errors():
        stale = dvcfile.write(load_params(params), root, check=check)
    if check and stale:
        err.print(f"stale: {', '.join(map(str, stale))}; run `cnc workflow dvc` to regenerate")
        raise typer.Exit(1)
    out.print(f"written {', '.join(map(str, stale))}" if stale else "up to date")


def main() -> None:
    code = warm.delegate(sys.argv)  # a warm server (cnc.warm) runs it, if one is there
    if code is not None:
        sys.exit(code)
    app()

"""The `cnc` command: one entry point for every step of the pipeline.

Each command parses its arguments, calls one library function and prints the result.
Settings are never given a default here: a run's defaults live in cnc/settings.py, and
`--settings` (a file or inline JSON) and `--set section.key=value` only override them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cnc.bench.cli import bench_app
from cnc.console import (
    DEFAULT_PARAMS,
    PARAMS_HELP,
    Device,
    Overrides,
    Params,
    Scale,
    announce,
    log_to,
    metric_rows,
    mtotal_text,
    out,
    print_table,
    user_errors,
)
from cnc.data.cli import data_app
from cnc.pipeline import warm
from cnc.pipeline.cli import workflow_app
from cnc.pipeline.experiments import DEFAULT_TARGET

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode="markdown"
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
app.add_typer(workflow_app, name="workflow")


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
    from cnc.pipeline.grid import job_settings
    from cnc.pipeline.jobs import run_job

    given = [*(overrides or []), *([f"backbone.weights={weights}"] * (weights is not None))]
    with user_errors():
        job = job_settings(run, params, settings, given)
        result = run_job(job, run_dir, resume, force, maps, device, progress)
    out.print(result.summary(run_dir), soft_wrap=True)
    announce(f"trained {result.summary(Path(run_dir.name))}")


@app.command("infer")
def infer(
    run_dir: Annotated[Path, typer.Argument(help="A trained run folder.")],
    overrides: Overrides = None,
    device: Device = "auto",
    progress: bool = True,
) -> None:
    """Anomaly maps of every test image, saved per class for `cnc evaluate`, with the
    run's inference settings (`--set infer.map_size=256` overrides them)."""
    from cnc.pipeline.jobs import infer_job

    with user_errors():
        summary = infer_job(run_dir, overrides or [], device, progress)
    counts = ", ".join(f"{c} {n}" for c, n in summary["classes"].items())
    out.print(f"maps written to {run_dir}: {counts}")
    announce(f"inferred {run_dir.name}: {counts}")


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
    from cnc.inference.predict import SCORES_CSV, SCORES_JSON, collect_images
    from cnc.inference.predict import predict as run_predict

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
    run: Annotated[
        str | None, typer.Option(help="With --params: a grid run's settings (Table S1's own).")
    ] = None,
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
    from cnc.pipeline.grid import evaluate_job_settings

    given = [*(overrides or []), *([f"evaluate.bootstrap={bootstrap}"] * (bootstrap is not None))]
    with user_errors():
        config = evaluate_job_settings(params, settings, given, run)
    for run_dir in run_dirs:
        draw = heatmaps and (heatmaps_for is None or run_dir.name in heatmaps_for)
        with user_errors():
            result = evaluate_run(run_dir, config, heatmaps=draw)
        print_table(f"{result['run']} (percent)", ["class", *METRICS], metric_rows(result))
        out.print(f"mTotal {mtotal_text(result)}; written to {run_dir}")
        announce(f"evaluated {run_dir.name}: mTotal {mtotal_text(result)}")


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
    announce(f"report {target}: {len(written)} files in {written[0].parent}")


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


def main() -> None:
    code = warm.delegate(sys.argv)  # a warm server (cnc.pipeline.warm) runs it, if one is there
    if code is not None:
        sys.exit(code)
    app()

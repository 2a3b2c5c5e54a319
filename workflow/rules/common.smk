import json
import os
import re
from pathlib import Path

from cnc import runs
from cnc.data.prepare import dataset_settings
from cnc.params import check_file, validate_params
from cnc.pipeline import experiments, grid, warm

check_file("params.yaml")  # a key given twice: Snakemake's own reader keeps the last
# Against cnc/schema.yaml; each error names its key (e.g. main.top_k).
validate_params(config, "params.yaml (with any --config)")
GRID = grid.check_grid(config)  # a bad combination (e.g. K > T) fails before any job
SCALE = config["scale"]
RUNS = grid.runs_dir(SCALE)
REPORTS = grid.reports_dir(SCALE)
FIGURES = grid.figures_dir(SCALE)
# Heat maps are drawn for the main runs (Tables 1 and 3); `cnc evaluate RUN` draws any other.
HEATMAP_RUNS = experiments.heatmap_runs(config)


wildcard_constraints:
    run="|".join(map(re.escape, GRID)),


def prepared_data():
    """The record of every dataset in data.prepare (check_grid: all the grid trains on)."""
    return [grid.data_record(d) for d in config["data"]["prepare"]]


def run_data(wildcards):
    return grid.data_record(grid.dataset_of(config, GRID[wildcards.run]))


def run_threads(wildcards):
    """The run's train.threads, or all cores; Snakemake caps it at --cores."""
    return grid.job_threads(config, GRID[wildcards.run])


def evaluate_settings(wildcards):
    """How the run is scored (params.yaml's evaluate, a Table S1 variant's over it)."""
    return json.dumps(grid.evaluate_settings(config, GRID[wildcards.run]).to_dict(), sort_keys=True)


def run_settings(wildcards):
    """Everything the run depends on (cnc.settings.RunSettings), as JSON."""
    return grid.run_settings(config, GRID[wildcards.run]).to_json()


def report_outputs(target):
    """A target's tables and figures, named by file stem and kind (table1, table1_tex...),
    those shown in Snakemake's HTML report flagged for it (cnc.pipeline.experiments)."""
    files = [f"{REPORTS}/{f}" for f in experiments.report_files(target)]
    files += [f"{FIGURES}/{f}" for f in experiments.figure_files(config, target)]
    return {output_key(f): reported(f) for f in files}


def reported(path):
    item = experiments.report_item(os.path.basename(path))
    if item is None:
        return path
    caption = f"{REPORTS}/report/captions/{item.pop('caption')}.rst"
    return report(path, caption=os.path.abspath(caption), **item)


def run_labels(wildcards):
    """What a run is labelled by in the HTML report (dataset, backbone, T, K...)."""
    return grid.run_labels(config, GRID[wildcards.run])


def heatmap_labels(wildcards):
    return {**run_labels(wildcards), "class": wildcards.cls}


def target_results(target):
    """The saved results of every run a target's experiments read."""
    return [f"{RUNS}/{run}/{f}" for run in grid.grid_points(config, target) for f in runs.REPORTED]


def front_page():
    """The HTML report's front page: the default target's, else that of an opt-in target
    that has run (each target's report job writes its own, cnc.report.captions)."""
    pages = [f"{REPORTS}/report/{target}.rst" for target in experiments.TARGETS]
    return next((page for page in pages if os.path.exists(page)), pages[0])


def output_key(path):
    stem, kind = os.path.splitext(os.path.basename(path))
    return stem if kind in (".md", ".png") else f"{stem}_{kind[1:]}"


# A warm start for the scale's many short jobs (params.yaml scales.*.warm_start).
onstart:
    if grid.scale_settings(config).get("warm_start", False):
        os.environ[warm.ENV] = warm.start(os.getpid(), Path(f"logs/{SCALE}/warm.log")) or ""


onsuccess:
    warm.stop(os.environ.pop(warm.ENV, None))


onerror:
    warm.stop(os.environ.pop(warm.ENV, None))

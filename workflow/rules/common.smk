import json
import os
import shlex

from cnc import grid
from cnc.config import validate_params

# Against workflow/schemas/params.schema.yaml; each error names its key (e.g. main.top_k).
validate_params(config, "params.yaml (with any --config)")
GRID = grid.check_grid(config)  # a bad combination (e.g. K > T) fails before any job
SCALE = config["scale"]
RUNS = f"{grid.RUNS_DIR}/{SCALE}"
REPORTS = f"{grid.REPORTS_DIR}/{SCALE}"
FIGURES = f"{grid.FIGURES_DIR}/{SCALE}"
# Heat maps are drawn for the main runs (Tables 1 and 3); `cnc evaluate RUN` draws any other.
MAIN_RUNS = grid.main_runs(config)


wildcard_constraints:
    run="|".join(GRID),


def prepared_data():
    """The record of every dataset in data.prepare (check_grid: all the grid trains on)."""
    return expand("results/data/{dataset}.json", dataset=config["data"]["prepare"])


def data_settings(dataset):
    """The settings one dataset's preparation depends on, as JSON for the command line."""
    data = config["data"]
    return json.dumps({"downloads": data["downloads"], dataset: data[dataset]}, sort_keys=True)


def run_data(wildcards):
    return f"results/data/{grid.dataset_of(config, GRID[wildcards.run])}.json"


def train_settings(wildcards):
    """Everything the run's training depends on, as one quoted JSON argument."""
    settings = grid.train_config(config, GRID[wildcards.run]).to_dict()
    return shlex.quote(json.dumps(settings, sort_keys=True))


def infer_settings(wildcards):
    i = grid.infer_config(config)
    return f"--map-size {i.map_size} --sigma {i.sigma} --infer-batch-size {i.batch_size}"


def report_outputs():
    """Every table and figure, named by file stem and kind (table1, table1_tex, fig4...)."""
    files = [f"{REPORTS}/{f}" for f in grid.REPORT_FILES]
    files += [f"{FIGURES}/{f}" for f in grid.FIGURE_FILES]
    return {output_key(f): f for f in files}


def output_key(path):
    stem, kind = os.path.splitext(os.path.basename(path))
    return stem if kind in (".md", ".png") else f"{stem}_{kind[1:]}"


def parent(path, levels=1):
    for _ in range(levels):
        path = os.path.dirname(path)
    return path


def report_settings():
    return shlex.quote(json.dumps(config, sort_keys=True))

"""dvc.yaml, generated from params.yaml's grid (DVC cannot compute the grid itself).

The run names do not depend on the scale and every path goes through DVC's `${scale}`
interpolation, so `dvc exp run -S scale=paper` works with the same file. Regenerate it
(`cnc workflow dvc`) after changing `seeds`, `main` or `experiments`; a test fails
while the committed file is stale.
"""

from __future__ import annotations

from typing import Any

import yaml

from cnc.grid import (
    FIGURE_FILES,
    FIGURES_DIR,
    REPORT_FILES,
    REPORTS_DIR,
    RUNS_DIR,
    grid_points,
    main_runs,
)

RUNS = f"{RUNS_DIR}/${{scale}}"
HEADER = """\
# Generated from params.yaml by `cnc workflow dvc`; do not edit by hand. Regenerate it
# after changing `seeds`, `main` or `experiments` (tests/test_workflow.py checks it).
# The same pipeline as the Snakefile; every path follows params.yaml's `scale`.
"""
# The code each stage's results depend on (a change re-runs the stage).
TRAIN_CODE = ["cnc/model", "cnc/train.py", "cnc/infer.py", "cnc/data/dataset.py", "cnc/grid.py"]
EVALUATE_CODE = ["cnc/metrics.py", "cnc/evaluate.py", "cnc/maps.py", "cnc/heatmaps.py"]
REPORT_CODE = ["cnc/report", "cnc/grid.py"]


def _uncached(path: str, **extra: Any) -> dict[str, Any]:
    return {path: {"cache": False, **extra}}


def stages(params: dict[str, Any]) -> dict[str, Any]:
    names = list(grid_points(params))
    run_dirs = [f"{RUNS}/{n}" for n in names]
    reports = f"{REPORTS_DIR}/${{scale}}"
    figures = f"{FIGURES_DIR}/${{scale}}"
    heatmaps = " ".join(f"--heatmaps-for {r}" for r in main_runs(params))
    return {
        "prepare_data": {
            "foreach": "${data.prepare}",
            "do": {
                "cmd": "cnc data prepare ${item} --params params.yaml "
                "--record results/data/${item}.json",
                "params": ["data.downloads", "data.${item}"],
                "outs": [_uncached("results/data/${item}.json")],
            },
        },
        "train": {
            "foreach": names,
            "do": {
                "cmd": f"cnc train {RUNS}/${{item}} --run ${{item}} --params params.yaml "
                "--resume --force --maps --no-progress",
                "deps": ["results/data", *TRAIN_CODE],
                "params": ["scale", "scales", "train", "model", "infer", "data"],
                "outs": [
                    _uncached(f"{RUNS}/${{item}}/model.pt", persist=True),
                    _uncached(f"{RUNS}/${{item}}/maps"),
                ],
                "plots": [_uncached(f"{RUNS}/${{item}}/train_log.csv", x="epoch", y="distill")],
            },
        },
        "evaluate": {
            "cmd": f"cnc evaluate {' '.join(run_dirs)} {heatmaps}",
            "deps": [f"{d}/maps" for d in run_dirs] + EVALUATE_CODE,
            "outs": [_uncached(f"{d}/metrics.csv") for d in run_dirs]
            + [_uncached(f"{RUNS}/{r}/heatmaps") for r in main_runs(params)],
            "metrics": [_uncached(f"{d}/metrics.json") for d in run_dirs],
        },
        "report": {
            "cmd": "cnc report --params params.yaml",
            "deps": [f"{d}/metrics.json" for d in run_dirs]
            + [f"{d}/train_log.csv" for d in run_dirs]
            + REPORT_CODE,
            "params": ["scale", "seeds", "main", "experiments"],
            "outs": [  # summary.json and fig4.csv are listed as metrics and plots
                _uncached(f"{reports}/{f}")
                for f in REPORT_FILES
                if f not in ("summary.json", "fig4.csv")
            ]
            + [_uncached(f"{figures}/{f}") for f in FIGURE_FILES],
            "metrics": [_uncached(f"{reports}/summary.json")],
            "plots": [_uncached(f"{reports}/fig4.csv", x="resolution", y="mtotal")],
        },
    }


def render(params: dict[str, Any]) -> str:
    body = yaml.safe_dump({"stages": stages(params)}, sort_keys=False, width=1000)
    return HEADER + body

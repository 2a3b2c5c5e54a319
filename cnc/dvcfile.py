"""dvc.yaml, generated from params.yaml's grid (DVC cannot compute the grid itself).

The run names do not depend on the scale and every path goes through DVC's `${scale}`
interpolation, so `dvc exp run -S scale=paper` works with the same file. The names are
listed once, in `vars`, for the two per-run stages (`train@<run>`, `evaluate@<run>`); the
report depends on each run's files by path, as DVC wants. Regenerate the file (`cnc
workflow dvc`) after changing `seeds`, `main` or `experiments`; a test fails while the
committed file is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cnc import code
from cnc.experiments import figure_files, heatmap_runs, report_files
from cnc.grid import (
    TRAIN_THREADS,
    data_record,
    figures_dir,
    grid_points,
    reports_dir,
    runs_dir,
)
from cnc.io import write_text
from cnc.runs import METRICS_CSV, METRICS_JSON, TRAIN_LOG

SCALE = "${scale}"
RUN = f"{runs_dir(SCALE)}/${{key}}"
HEADER = """\
# Generated from params.yaml by `cnc workflow dvc`; do not edit by hand. Regenerate it
# after changing `seeds`, `main` or `experiments` (tests/test_workflow.py checks it).
# The same pipeline as the Snakefile; every path follows params.yaml's `scale`.
"""


def _uncached(path: str, **extra: Any) -> dict[str, Any]:
    return {path: {"cache": False, **extra}}


def stages(params: dict[str, Any]) -> dict[str, Any]:
    names = list(grid_points(params))
    reports, figures = reports_dir(SCALE), figures_dir(SCALE)
    listed = ("summary.json", "fig4.csv")  # DVC metrics and plots, not plain outs
    return {
        "prepare_data": {
            "foreach": "${data.prepare}",
            "do": {
                "cmd": "cnc data prepare ${item} --params params.yaml "
                f"--record {data_record('${item}')}",
                "deps": list(code.DATA),
                "params": ["data.downloads", "data.${item}"],
                "outs": [_uncached(data_record("${item}"))],
            },
        },
        "train": {
            "foreach": "${runs}",
            "do": {
                "cmd": f"OMP_NUM_THREADS={TRAIN_THREADS} cnc train {RUN} --run ${{key}} "
                "--params params.yaml --resume --force --no-progress",
                "deps": ["results/data", *code.SETTINGS, *code.TRAIN, *code.INFER],
                "params": ["scale", "scales", "backbone", "model", "train", "infer", "data"],
                "outs": [
                    _uncached(f"{RUN}/model.pt", persist=True),
                    _uncached(f"{RUN}/maps"),
                ],
                "plots": [_uncached(f"{RUN}/{TRAIN_LOG}", x="epoch", y="distill")],
            },
        },
        "evaluate": {
            "foreach": "${runs}",
            "do": {
                "cmd": f"cnc evaluate {RUN} --${{item.heatmaps}}",
                "deps": [f"{RUN}/maps", *code.EVALUATE],
                "outs": [_uncached(f"{RUN}/{METRICS_CSV}")],
                "metrics": [_uncached(f"{RUN}/{METRICS_JSON}")],
            },
        },
        "report": {
            "cmd": "cnc report --params params.yaml",
            "deps": [f"{runs_dir(SCALE)}/{n}/{METRICS_JSON}" for n in names]
            + [f"{runs_dir(SCALE)}/{n}/{TRAIN_LOG}" for n in names]
            + list(code.REPORT),
            "params": ["scale", "seeds", "main", "experiments"],
            "outs": [_uncached(f"{reports}/{f}") for f in report_files() if f not in listed]
            + [_uncached(f"{figures}/{f}") for f in figure_files(params)],
            "metrics": [_uncached(f"{reports}/summary.json")],
            "plots": [_uncached(f"{reports}/fig4.csv", x="resolution", y="mtotal")],
        },
    }


def render(params: dict[str, Any]) -> str:
    drawn = set(heatmap_runs(params))
    flag = {True: "heatmaps", False: "no-heatmaps"}  # `cnc evaluate --heatmaps/--no-heatmaps`
    runs = {n: {"heatmaps": flag[n in drawn]} for n in grid_points(params)}
    body = yaml.safe_dump(
        {"vars": [{"runs": runs}], "stages": stages(params)}, sort_keys=False, width=1000
    )
    return HEADER + body


def write(params: dict[str, Any], path: Path, check: bool = False) -> bool:
    """Write dvc.yaml for `params`; with `check`, only compare. True when it was stale."""
    text = render(params)
    stale = not Path(path).is_file() or Path(path).read_text() != text
    if stale and not check:
        write_text(path, text)
        return False
    return stale


def lock_problems(lock: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """Where a dvc.lock records a params.yaml value other than `params` holds."""
    problems = []
    for stage, entry in (lock.get("stages") or {}).items():
        for dotted, recorded in (entry.get("params") or {}).get("params.yaml", {}).items():
            node: Any = params
            for key in dotted.split("."):
                node = node.get(key) if isinstance(node, dict) else None
            if node != recorded:
                problems.append(
                    f"dvc.lock: {stage} records {dotted} = {recorded!r}, params.yaml has {node!r}"
                )
    return problems

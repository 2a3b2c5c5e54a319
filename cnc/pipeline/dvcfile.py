"""dvc.yaml, generated from params.yaml's grid (DVC cannot compute the grid itself).

One pipeline file per workflow target of the experiment registry: `dvc.yaml` for the
default one (what a plain `dvc repro` runs), `<target>/dvc.yaml` for each opt-in one
(`dvc repro choices/dvc.yaml`), holding only the runs the default does not train and
working from the project root (`wdir: ..`). The run names do not depend on the scale and
every path goes through DVC's `${scale}` interpolation, so `dvc exp run -S scale=paper`
works with the same files. The names are listed once per file, in `vars`, for the two
per-run stages (`train@<run>`, `evaluate@<run>`); a report depends on each run's files by
path, as DVC wants. Regenerate the files (`cnc workflow dvc`) after changing `seeds`,
`main` or `experiments`; a test fails while a committed one is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cnc import code
from cnc.io import write_text
from cnc.pipeline.experiments import (
    DEFAULT_TARGET,
    HEADLINE,
    TARGETS,
    experiments,
    figure_files,
    heatmap_runs,
    report_files,
)
from cnc.pipeline.grid import (
    data_record,
    figures_dir,
    grid_points,
    own_points,
    reports_dir,
    runs_dir,
)
from cnc.runs import (
    BOOTSTRAP,
    COST,
    HEATMAPS_DIR,
    METRICS_CSV,
    METRICS_JSON,
    PROVENANCE,
    REPORTED,
    TRAIN_LOG,
)

SCALE = "${scale}"
RUN = f"{runs_dir(SCALE)}/${{key}}"
HEADER = """\
# Generated from params.yaml by `cnc workflow dvc`; do not edit by hand. Regenerate it
# after changing `seeds`, `main` or `experiments` (tests/test_workflow.py checks it).
# The same pipeline as the Snakefile's target `{target}`; paths follow params.yaml's `scale`.
"""


def _uncached(path: str, **extra: Any) -> dict[str, Any]:
    return {path: {"cache": False, **extra}}


def _cached(path: str, **extra: Any) -> str | dict[str, Any]:
    """A metrics or plots file DVC keeps in its cache: results/ is not in git, so only the
    cache (found through a committed dvc.lock or an experiment) holds an older
    revision's copy for `dvc metrics diff` and `dvc plots diff`."""
    return {path: extra} if extra else path


def _run_stages(where: dict[str, str]) -> dict[str, Any]:
    """Training (then maps) and evaluation of every run in `vars`' `runs`. Only the default
    pipeline declares the training logs as plots: `dvc plots show` reads every pipeline
    file's and would fail on an opt-in target's runs not trained."""
    opt_in = bool(where)  # the opt-in pipelines work from the project root (`wdir`)
    log = f"{RUN}/{TRAIN_LOG}"
    return {
        "train": {
            "foreach": "${runs}",
            "do": {
                **where,
                # the job's threads: its train.threads (DVC runs one stage at a time)
                "cmd": f"cnc train {RUN} --run ${{key}} --params params.yaml --resume --force "
                "--no-progress",
                "deps": ["results/data", *code.SETTINGS, *code.TRAIN, *code.INFER],
                "params": ["scale", "scales", "backbone", "model", "train", "infer", "data"],
                "outs": [
                    _uncached(f"{RUN}/model.pt", persist=True),
                    _uncached(f"{RUN}/maps"),
                    _uncached(f"{RUN}/{COST}"),
                    _uncached(f"{RUN}/{PROVENANCE}"),
                    *([_uncached(log)] if opt_in else []),
                ],
                **({} if opt_in else {"plots": [_cached(log, x="epoch", y="distill")]}),
            },
        },
        "evaluate": {
            "foreach": "${runs}",
            "do": {
                **where,
                "cmd": f"cnc evaluate {RUN} --params params.yaml --run ${{key}} "
                "--${item.heatmaps}",
                "deps": [f"{RUN}/maps", f"{RUN}/{PROVENANCE}", *code.EVALUATE],
                "params": ["scale", "scales", "evaluate"],
                # metrics.json is a plain output: as DVC metrics, its hundreds of numbers per
                # run made `dvc metrics show` thousands of characters wide (headline.json)
                "outs": [
                    _uncached(f"{RUN}/{METRICS_CSV}"),
                    _uncached(f"{RUN}/{BOOTSTRAP}"),
                    _uncached(f"{RUN}/{METRICS_JSON}"),
                    _uncached(f"{RUN}/{HEATMAPS_DIR}"),  # a README.txt where none are drawn
                ],
            },
        },
    }


def _report(params: dict[str, Any], target: str, where: dict[str, str]) -> dict[str, Any]:
    names = list(grid_points(params, target))
    reports, figures = reports_dir(SCALE), figures_dir(SCALE)
    plots = [e.plot for e in experiments(target).values() if e.plot]
    listed = (HEADLINE, *(p.file for p in plots))  # DVC metrics and plots, not plain outs
    stage: dict[str, Any] = {
        **where,
        "cmd": f"cnc report --params params.yaml --target {target}",
        "deps": [f"{runs_dir(SCALE)}/{n}/{f}" for f in REPORTED for n in names] + list(code.REPORT),
        "params": ["scale", "seeds", "main", "experiments"],
        "outs": [_uncached(f"{reports}/{f}") for f in report_files(target) if f not in listed]
        + [_uncached(f"{figures}/{f}") for f in figure_files(params, target)],
    }
    if target == DEFAULT_TARGET:
        stage["metrics"] = [_cached(f"{reports}/{HEADLINE}")]
        stage["plots"] = [
            _cached(f"{reports}/{p.file}", x=p.x, y=p.y, template=p.template) for p in plots
        ]
    return stage


def stages(params: dict[str, Any], target: str = DEFAULT_TARGET) -> dict[str, Any]:
    if target != DEFAULT_TARGET:
        where = {"wdir": ".."}
        return {**_run_stages(where), f"report_{target}": _report(params, target, where)}
    prepare = {
        "foreach": "${data.prepare}",
        "do": {
            "cmd": "cnc data prepare ${item} --params params.yaml "
            f"--record {data_record('${item}')}",
            "deps": list(code.DATA),
            "params": ["data.downloads", "data.${item}"],
            "outs": [_uncached(data_record("${item}"))],
        },
    }
    # Every stage's command validates params.yaml, but DVC runs none for a change no
    # stage tracks (a misspelt section): this one tracks the whole file.
    check = {"cmd": "cnc workflow check --params params.yaml", "params": [{"params.yaml": None}]}
    return {
        "check_params": check,
        "prepare_data": prepare,
        **_run_stages({}),
        "report": _report(params, target, {}),
    }


def path(target: str) -> Path:
    """Where a target's pipeline file lives, relative to the project root."""
    return Path("dvc.yaml") if target == DEFAULT_TARGET else Path(target) / "dvc.yaml"


def render(params: dict[str, Any], target: str = DEFAULT_TARGET) -> str:
    default = target == DEFAULT_TARGET
    points = grid_points(params, target) if default else own_points(params, target)
    drawn = set(heatmap_runs(params))
    flag = {True: "heatmaps", False: "no-heatmaps"}  # `cnc evaluate --heatmaps/--no-heatmaps`
    runs = {n: {"heatmaps": flag[n in drawn]} for n in points}
    variables = [{"runs": runs}] if default else ["../params.yaml", {"runs": runs}]
    body = yaml.safe_dump(
        {"vars": variables, "stages": stages(params, target)}, sort_keys=False, width=1000
    )
    return HEADER.format(target=target) + body


def write(params: dict[str, Any], root: Path, check: bool = False) -> list[Path]:
    """Write every target's pipeline file under `root`; with `check`, only compare.
    Returns the files that were stale (rewritten unless `check`)."""
    stale = []
    for target in TARGETS:
        file, text = Path(root) / path(target), render(params, target)
        if not file.is_file() or file.read_text() != text:
            stale.append(file)
            if not check:
                write_text(file, text)
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

"""params.yaml -> the runs to train and each run's settings.

`run_settings(params, point)` is the one function that turns a grid point into the
settings of its job; Snakemake passes its result to `cnc train --settings`, DVC calls it
through `cnc train --run NAME`. The settings are the dataclass defaults (cnc.settings),
overridden by params.yaml's `backbone`/`model`/`train`/`infer` sections, then by the
scale's, then by what the grid point decides (dataset, backbone, resolution, switches,
seed). An override of something the grid decides is an error, not silently lost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnc.errors import SettingsError, UsageError, UserError
from cnc.params import DEFAULT, load_params, read_structured
from cnc.pipeline.experiments import DEFAULT_TARGET, GridPoint, cells
from cnc.settings import (
    SCORING,
    EvaluateSettings,
    RunSettings,
    apply_overrides,
    fit_resolution,
    tiny_name,
)

RESULTS = "results"
OVERRIDABLE = ("backbone", "model", "train", "infer")
DECIDED_BY_GRID = {  # section -> the keys each grid point sets
    "backbone": ("name", "resolution"),
    "model": ("mlf", "constraint", "moe_experts", "moe_top_k"),
}


def runs_dir(scale: str) -> str:
    return f"{RESULTS}/runs/{scale}"


def reports_dir(scale: str) -> str:
    return f"{RESULTS}/reports/{scale}"


def figures_dir(scale: str) -> str:
    return f"{RESULTS}/figures/{scale}"


def data_record(dataset: str) -> str:
    """What `cnc data prepare` writes once a dataset is ready (the workflow's marker)."""
    return f"{RESULTS}/data/{dataset}.json"


def grid_points(params: dict[str, Any], target: str | None = None) -> dict[str, GridPoint]:
    """Every run of every experiment (of a workflow target), once, by name (sorted)."""
    points = {p for table in cells(params, target).values() for c in table for p in c.points}
    return {p.name: p for p in sorted(points)}


def own_points(params: dict[str, Any], target: str) -> dict[str, GridPoint]:
    """The runs a target needs that the default target does not train already."""
    shared = grid_points(params, DEFAULT_TARGET)
    return {n: p for n, p in grid_points(params, target).items() if n not in shared}


def scale_settings(params: dict[str, Any]) -> dict[str, Any]:
    return params["scales"][params["scale"]]


def dataset_of(params: dict[str, Any], point: GridPoint) -> str:
    return scale_settings(params)["datasets"][point.role]


def _refuse_decided(source: str, section: str, keys: Any) -> None:
    decided = [k for k in DECIDED_BY_GRID.get(section, ()) if k in keys]
    if decided:
        raise SettingsError(
            f"{source}{section}.{decided[0]}: set by the grid (`main` and the experiments' "
            "axes), not here"
        )


def _overrides(params: dict[str, Any], point: GridPoint) -> dict[str, Any]:
    """params.yaml's override sections, the scale's over the top-level ones, then the
    grid point's variant (Table S1)."""
    merged: dict[str, Any] = {}
    for source, layer in (("", params), (f"scales.{params['scale']}.", scale_settings(params))):
        for section in OVERRIDABLE:
            given = layer.get(section, {})
            _refuse_decided(source, section, given)
            merged[section] = {**merged.get(section, {}), **given}
    for dotted, value in point.overrides.items():
        section, key = dotted.split(".")
        if section == "evaluate":  # how the run is scored, not trained (evaluate_settings)
            continue
        _refuse_decided("a variant's ", section, [key])
        merged.setdefault(section, {})[key] = value
    return merged


def run_settings(params: dict[str, Any], point: GridPoint) -> RunSettings:
    """What is trained for `point` at the chosen scale."""
    sc = scale_settings(params)
    dataset = dataset_of(params, point)
    entry = params["data"].get(dataset)
    if not isinstance(entry, dict):
        raise SettingsError(f"data.{dataset}: missing; add it with its root (see params.yaml)")
    root = entry.get("root")
    if root is None:
        raise SettingsError(f"data.{dataset}.root: not set; give the dataset folder in params.yaml")
    divisor = sc["resolution_divisor"]
    if point.resolution % divisor:
        raise SettingsError(
            f"scales.{params['scale']}.resolution_divisor: {divisor} does not divide "
            f"resolution {point.resolution}"
        )
    settings = _overrides(params, point)
    settings["data"] = {"dataset": dataset, "root": str(root)}
    settings["backbone"].update(
        name=tiny_name(point.backbone) if sc["tiny_backbones"] else point.backbone,
        # the scale's resolution, fitted to the patch size (docs/REPRODUCTION.md)
        resolution=fit_resolution(point.backbone, point.resolution // divisor),
    )
    settings["model"].update(
        mlf=point.mlf,
        constraint=point.constraint,
        moe_experts=point.experts,
        moe_top_k=point.top_k if point.experts else 0,
    )
    settings["seed"] = point.seed
    return RunSettings.from_dict(settings, f"run {point.name}")


def run_labels(params: dict[str, Any], point: GridPoint) -> dict[str, str]:
    """How a run is labelled in Snakemake's HTML report: what a reader filters by."""
    settings = run_settings(params, point)
    variant = ", ".join(f"{k}={v}" for k, v in point.overrides.items())
    return {
        "dataset": settings.data.dataset,
        "backbone": point.backbone,
        "resolution": str(settings.backbone.resolution),
        "T": str(point.experts) if point.experts else "none",
        "K": str(point.top_k) if point.experts else "-",
        "MLF": "yes" if point.mlf else "no",
        "CNC": "yes" if point.constraint else "no",
        "variant": variant or "-",
        "seed": str(point.seed),
    }


def job_threads(params: dict[str, Any], point: GridPoint) -> int:
    """The CPU threads a run's training job asks the workflow for: its `train.threads`,
    or every core of this machine. Snakemake caps a job's threads at `--cores` (a cluster
    job: at what its node gives it) and passes them on as OMP_NUM_THREADS; the job never
    uses more than that nor than its CPUs (cnc.training.devices)."""
    return run_settings(params, point).train.threads or os.cpu_count() or 1


def evaluate_settings(params: dict[str, Any], point: GridPoint | None = None) -> EvaluateSettings:
    """How the workflow scores saved maps: params.yaml's `evaluate`, the scale's over it,
    and a Table S1 variant's `evaluate.*` over those (for its run)."""
    given = {**params.get("evaluate", {}), **scale_settings(params).get("evaluate", {})}
    for dotted, value in (point.overrides if point else {}).items():
        section, key = dotted.split(".")
        if section == "evaluate":
            given[key] = value
    return EvaluateSettings.from_dict(given, "params.yaml evaluate")


def scoring(params: dict[str, Any], point: GridPoint | None = None) -> dict[str, Any]:
    """The evaluation protocol params.yaml asks for (for `point`'s run), on the keys where
    runs' numbers must agree to compare (cnc.settings.SCORING): what reports check every
    run against."""
    protocol = evaluate_settings(params, point).protocol()
    return {k: v for k, v in protocol.items() if k in SCORING}


def check_grid(params: dict[str, Any]) -> dict[str, GridPoint]:
    """Every run resolved once, so a bad combination fails before anything runs."""
    main = params["main"]
    if main["experts"] and not 1 <= main["top_k"] <= main["experts"]:
        raise SettingsError(
            f"main.top_k: {main['top_k']} with main.experts {main['experts']}; the top K of T "
            "experts needs 1 <= K <= T"
        )
    points = grid_points(params)
    used = sorted({dataset_of(params, p) for p in points.values()})
    missing = [d for d in used if d not in params["data"]["prepare"]]
    if missing:
        raise SettingsError(
            f"data.prepare: scale {params['scale']} trains on {', '.join(used)}; add "
            f"{', '.join(missing)} to data.prepare (downloaded, or placed at data.<name>.root)"
        )
    for name, point in points.items():
        try:
            run_settings(params, point)
            evaluate_settings(params, point)
        except UserError as exc:
            raise SettingsError(f"run {name}: {exc}") from None
    return points


def run_dir(params: dict[str, Any], name: str) -> str:
    return f"{runs_dir(params['scale'])}/{name}"


def describe_runs(params: dict[str, Any], target: str | None = None) -> dict[str, dict]:
    """The runs of a target (all for None): folder and settings (`cnc workflow runs`)."""
    check_grid(params)
    return {
        name: {"dir": run_dir(params, name), "settings": run_settings(params, point).to_dict()}
        for name, point in grid_points(params, target).items()
    }


def job_settings(
    run: str | None = None,
    params: str | Path = DEFAULT,
    settings: str | None = None,
    overrides: list[str] | None = None,
) -> RunSettings:
    """A job's settings from the command line's sources, each over the last: the
    defaults, a run of the grid (`--run`) or a settings file or JSON (`--settings`), and
    `--set key=value` assignments."""
    if run is not None and settings is not None:
        raise UsageError("--run and --settings: give one of them")
    if run is not None:
        p = load_params(params)
        points = check_grid(p)
        if run not in points:
            raise UsageError(f"--run {run}: not a run of the grid; `cnc workflow runs` lists them")
        return run_settings(p, points[run]).with_overrides(overrides or [])
    base = {} if settings is None else read_structured(settings, "--settings")
    source = "--settings" if settings is not None else "settings"
    return RunSettings.from_dict(apply_overrides(base, overrides or []), source)


def evaluate_job_settings(
    params: str | Path | None = None,
    settings: str | None = None,
    overrides: list[str] | None = None,
    run: str | None = None,
) -> EvaluateSettings:
    """Evaluation settings from the command line's sources, each over the last: the
    defaults, params (`--params`, with `run`: that run of the grid's, a Table S1 variant's
    included) or an `evaluate` section (`--settings`), and `--set evaluate.key=value`."""
    if params is not None and settings is not None:
        raise UsageError("--params and --settings: give one of them")
    if run is not None and params is None:
        raise UsageError("--run: give the grid's --params too")
    if params is not None:
        loaded = load_params(params)
        point = None
        if run is not None:
            runs = check_grid(loaded)
            if run not in runs:
                raise UsageError(f"--run {run}: not a run of the grid (`cnc workflow runs`)")
            point = runs[run]
        base = evaluate_settings(loaded, point).to_dict()
    else:
        base = {} if settings is None else read_structured(settings, "--settings")
    given = apply_overrides({"evaluate": base}, overrides or [])
    unknown = sorted(set(given) - {"evaluate"})
    if unknown:
        raise SettingsError(f"--set {unknown[0]}.*: evaluation takes evaluate.<key> only")
    return EvaluateSettings.from_dict(given["evaluate"], "--settings/--set")

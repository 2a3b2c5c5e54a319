"""Kill each step of a run at every file-system change it makes; check what is left.

Run as a script (tests/test_crash.py does): `python tests/crash.py WORKDIR [STEP...]`
prints one JSON object per step. The process imports torch and the package once, runs
nothing in torch itself, and forks a child per attempt (as cnc.pipeline.warm does), so an attempt
costs the step's own time. A child is armed to kill itself with SIGKILL just before its
k-th file-system change (os.replace, rename, unlink, mkdir, rmtree, mkstemp, mkdtemp,
open for writing); k runs over every change an uninterrupted run makes (the report,
which makes hundreds: a spread of them, the whole commit among them).

After each kill a reader looks at what is there, as the reports do (the metrics checked
against their files, cnc.runs.checked_metrics): it must see either the state before the
step or the state after it, or refuse with a message; never a mix. Then the same command
runs again, uninterrupted: it must end as an uninterrupted run ends, leaving no
temporary file.
"""

from __future__ import annotations

import builtins
import copy
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # helpers, test_report

import numpy as np
import torch

import cnc.evaluation.evaluate
import cnc.evaluation.heatmaps
import cnc.inference.predict
import cnc.pipeline.jobs
import cnc.report.build  # noqa: F401
from cnc.cli import app
from cnc.errors import UserError
from cnc.evaluation.maps import read_protocol
from cnc.runs import checked_metrics

CHANGES = [
    (os, "replace"),
    (os, "rename"),
    (os, "unlink"),
    (os, "remove"),
    (os, "rmdir"),
    (os, "mkdir"),
    (shutil, "rmtree"),
    (tempfile, "mkstemp"),
    (tempfile, "mkdtemp"),
    (builtins, "open"),
    (io, "open"),
]
# The suite's sample: a step that makes more than ALL changes is killed at SPREAD of them
# and at its last LAST (its commit); `--every` kills it at every one.
ALL, SPREAD, LAST = 16, 10, 6


def _writes(args: tuple, kwargs: dict) -> bool:
    mode = kwargs.get("mode", args[1] if len(args) > 1 else "r")
    return isinstance(mode, str) and any(c in mode for c in "wax+")


def arm(at: int | None) -> list[int]:
    """Count every file-system change of this process; SIGKILL it before the `at`-th."""
    count = [0]

    def wrap(module: Any, name: str) -> None:
        real = getattr(module, name)

        def changed(*args: Any, **kwargs: Any) -> Any:
            if name == "open" and not _writes(args, kwargs):
                return real(*args, **kwargs)
            count[0] += 1
            if count[0] == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(module, name, changed)

    for module, name in CHANGES:
        wrap(module, name)
    return count


def forked(command: list[str], at: int | None = None) -> tuple[str, int]:
    """`cnc COMMAND` in a forked child (killed before its `at`-th change): ("killed" or
    the exit code, the changes it counted)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        torch.set_num_threads(1)  # as DataLoader's workers do after a fork
        quiet = os.open(os.environ["CRASH_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        count = arm(at)
        code = 0
        try:
            app(args=command, prog_name="cnc")
        except SystemExit as end:
            code = end.code if isinstance(end.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 99
        os.write(write, str(count[0]).encode())
        os._exit(code or 0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    counted = os.read(read, 64)
    os.close(read)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed", at or -1
    return str(os.WEXITSTATUS(status)), int(counted or -1)


def points(total: int, every: bool = False) -> list[int]:
    """Every change, or a spread of them that includes the last ones (a step's commit)."""
    if every or total <= ALL:
        return list(range(1, total + 1))
    spread = np.linspace(1, total - LAST, SPREAD).round().astype(int).tolist()
    return sorted({*spread, *range(total - LAST + 1, total + 1)})


# ----------------------------------------------------------------------------- readers


def run_view(run: Path) -> Any:
    """What a report reads of a run, or the refusal: metrics checked against their files,
    and the numbers they hold."""
    try:
        metrics = checked_metrics(run)
    except UserError as exc:
        return f"refused: {str(exc).splitlines()[0]}"
    maps = read_protocol(run / "maps")["maps"] if (run / "maps").is_dir() else None
    return {
        "classes": metrics["classes"],
        "intervals": metrics["intervals"],
        "sigma": metrics["protocol"]["smoothing_sigma"],
        "map_size": metrics["protocol"]["map_size"],
        "maps": maps,
    }


def folder_view(folder: Path, commit: str, compared: tuple[str, ...]) -> Any:
    """A folder of outputs committed by `commit`: absent commit point = not done; else the
    content of the files (by suffix) it commits."""
    if not (folder / commit).is_file():
        return "refused: no commit point"
    return {
        p.name: p.read_text()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in compared and not p.name.startswith(".")
    }


def predictions_view(out: Path) -> Any:
    if not (out / "scores.json").is_file():
        return "refused: no scores.json"
    record = json.loads((out / "scores.json").read_text())
    missing = [i["overlay"] for i in record["images"] if not Path(i["overlay"]).is_file()]
    return {"scores": [round(i["score"], 6) for i in record["images"]], "missing": missing}


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp"))


# ----------------------------------------------------------------------------- steps


class Scenario:
    """A step to kill: `start(folder)` lays out what it starts from in `folder` and
    returns the folder the step works on; `command` and `then` (what completes the state
    a reader compares, or None) take that folder; `view` is the reader."""

    def __init__(self, start, command, view, then=None) -> None:
        self.start, self.command, self.view, self.then = start, command, view, then


def prepare(work: Path) -> dict[str, Any]:
    """The data, two trained runs (seed 1: the old one, seed 0: the new one, both
    evaluated at sigma 2) and predictions of two images by the new one."""
    data = work / "data"
    ok = forked(["data", "synthetic", str(data), "--classes", "wood,washer", "--image-size",
                 "48", "--train-per-class", "4", "--test-per-class", "4"])  # fmt: skip
    assert ok[0] == "0", ok
    settings = {
        "data": {"dataset": "synthetic", "root": str(data)},
        "backbone": {"name": "cnc-tiny-ViT-B-16", "weights": "random", "resolution": 64},
        "model": {"moe_experts": 3, "moe_top_k": 2, "theta": 1},
        "train": {"epochs": 2, "batch_size": 4, "checkpoint_every": 1},
    }
    base = work / "base"
    for name, seed in (("old", 1), ("new", 0)):
        given = json.dumps({**settings, "seed": seed})
        assert forked(["train", str(base / name), "--settings", given, "--no-progress"])[0] == "0"
        done = forked(["evaluate", str(base / name), "--set", "evaluate.sigma=2",
                       "--bootstrap", "100", "--no-heatmaps"])  # fmt: skip
        assert done[0] == "0", done
    images = sorted(str(p) for p in (data / "wood" / "test").glob("*/*.png"))
    done = forked(["predict", str(base / "new"), *images[:2], "--out", str(base / "scores")])
    assert done[0] == "0", done
    return {"settings": json.dumps({**settings, "seed": 0}), "images": images, "base": base}


def run_scenarios(setup: dict[str, Any]) -> dict[str, Scenario]:
    base = setup["base"]
    evaluate = ["evaluate", "--set", "evaluate.sigma=4", "--bootstrap", "100"]

    def copy_of(name: str):
        def start(folder: Path) -> Path:  # times kept: the model's stamp in the maps holds
            shutil.copytree(base / name, folder / "run")
            shutil.copytree(base / "scores", folder / "scores")
            return folder / "run"

        return start

    def then(run: Path) -> list[str]:
        return [evaluate[0], str(run), *evaluate[1:], "--no-heatmaps"]

    def retrain(run: Path) -> list[str]:  # the old run with the new settings, as Snakemake
        return ["train", str(run), "--settings", setup["settings"], "--resume", "--force",
                "--no-progress"]  # fmt: skip

    def predict(run: Path) -> list[str]:
        out = str(run.parent / "scores")
        return ["predict", str(run), *setup["images"][2:5], "--out", out, "--overwrite"]

    return {
        "train": Scenario(copy_of("old"), retrain, run_view, then),
        "infer": Scenario(
            copy_of("new"),
            lambda run: ["infer", str(run), "--set", "infer.map_size=32", "--no-progress"],
            run_view,
            then,
        ),
        "evaluate": Scenario(
            copy_of("new"),
            lambda run: [evaluate[0], str(run), *evaluate[1:], "--heatmaps"],
            run_view,
        ),
        "predict": Scenario(
            copy_of("new"), predict, lambda run: predictions_view(run.parent / "scores")
        ),
    }


def report_scenario(work: Path) -> Scenario:
    """The report over a small grid of runs (saved results only), written over an earlier
    report of other numbers."""
    from test_report import PARAMS, fake_grid

    params = copy.deepcopy(PARAMS)
    params["experiments"].update(
        table2={"dataset": "mvtec", "rows": {"i": [False] * 3, "vii": [True] * 3}},
        table4={"dataset": "mvtec", "experts": [2], "top_k": [1]},
        fig4={"dataset": "mvtec", "backbones": ["ViT-B-16"], "resolutions": [224]},
    )
    runs = work / "report" / "runs"
    fake_grid(runs, params, "synthetic", ["wood", "grid"])
    args = ["report", "--params", json.dumps(params), "--runs", str(runs)]

    def command(folder: Path) -> list[str]:
        return [*args, "--reports", str(folder / "reports"), "--figures", str(folder / "figs")]

    earlier = work / "report" / "earlier"
    assert forked(command(earlier))[0] == "0"
    fake_grid(runs, params, "synthetic", ["wood", "grid"], seeds_shift={"s0": 1.5})

    def start(folder: Path) -> Path:
        shutil.copytree(earlier, folder / "out")
        return folder / "out"

    def view(folder: Path) -> Any:
        return folder_view(folder / "reports", "README.md", (".md", ".csv", ".tex"))

    return Scenario(start, command, view)


def check(work: Path, name: str, scenario: Scenario, every: bool) -> dict[str, Any]:
    """Kill the step at each point; count what the reader saw; list every failure."""
    target = scenario.start(work / name / "clean")
    before = scenario.view(target)
    code, total = forked(scenario.command(target))
    assert code == "0", (name, code)
    if scenario.then:
        assert forked(scenario.then(target))[0] == "0"
    after = scenario.view(target)
    assert before != after, f"{name}: the step changes nothing a reader sees"
    seen = {"before": 0, "after": 0, "refused": 0}
    result = {"step": name, "changes": total, "kill_points": [], "seen": seen, "failures": []}
    for at in points(total, every):
        failures = attempt(work / name / f"k{at}", scenario, at, before, after, seen)
        result["failures"] += [f"k={at}: {f}" for f in failures]
        result["kill_points"].append(at)
    return result


def attempt(
    folder: Path, scenario: Scenario, at: int, before: Any, after: Any, seen: dict[str, int]
) -> list[str]:
    """One kill, the reader's look, the rerun; what went wrong."""
    target = scenario.start(folder)
    outcome, _ = forked(scenario.command(target), at)
    if outcome != "killed":
        return [f"not killed (exit {outcome})"]
    failures = []
    view = scenario.view(target)
    if view in (before, after):
        seen["before" if view == before else "after"] += 1
    elif isinstance(view, str) and view.startswith("refused"):
        seen["refused"] += 1
    else:
        failures.append(f"a reader saw a mixed state: {view}")
    if forked(scenario.command(target))[0] != "0":
        return [*failures, "the rerun failed"]
    if scenario.then and forked(scenario.then(target))[0] != "0":
        failures.append("completing the state after the rerun failed")
    if scenario.view(target) != after:
        failures.append(f"the rerun did not recover: {scenario.view(target)}")
    left = temporaries(folder)
    if left:
        failures.append(f"temporary files left: {left}")
    shutil.rmtree(folder)
    return failures


def main(work: Path, steps: list[str], every: bool) -> None:
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    os.environ["CRASH_LOG"] = str(work / "steps.log")  # what the children print
    chosen = steps or ["train", "infer", "evaluate", "predict", "report"]
    scenarios = run_scenarios(prepare(work)) if set(chosen) - {"report"} else {}
    for name in chosen:
        scenario = report_scenario(work) if name == "report" else scenarios[name]
        print(json.dumps(check(work, name, scenario, every)), flush=True)


if __name__ == "__main__":
    given = sys.argv[2:]
    main(Path(sys.argv[1]), [a for a in given if a != "--every"], "--every" in given)

"""The workflow end to end on a small grid: Snakemake and DVC build the same runs and the
same tables, resume after an interruption, re-run what a changed setting affects."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from cnc.cli import app
from cnc.pipeline import dvcfile, experiments, grid

ROOT = Path(__file__).resolve().parents[1]
MAIN = "mvtec-vitl14_336-r224-mlf-cnc-moeT5K2-s0"
BIN = Path(sys.executable).parent
runner = CliRunner()


def small_params() -> dict:
    """The grid's shape, scaled down to a minute of CPU: 6 runs, 1 epoch, tiny images."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["synthetic"].update(
        image_size=48, train_per_class=2, test_per_class=3, classes=["wood", "chip"]
    )
    params["scales"]["smoke"].update(train={"epochs": 1, "threads": 1}, infer={"map_size": 32})
    params["experiments"]["table2"]["rows"] = {"i": [False, False, False], "vii": [True] * 3}
    params["experiments"]["table4"].update(experts=[1], top_k=[1, 2])
    params["experiments"]["fig4"].update(backbones=["ViT-B-32"], resolutions=[224])
    params["experiments"]["tableS1"]["variants"] = [
        {"model.noise_std": 0.2},
        {"evaluate.sigma": 0},  # a variant of the scoring: its run evaluated at sigma 0
    ]
    return params


def project(tmp_path: Path, name: str = "project", params: dict | None = None) -> Path:
    work = tmp_path / name
    work.mkdir()
    for item in ("Snakefile", "workflow", "profiles", "environment.yml"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    (work / "params.yaml").write_text(yaml.safe_dump(params or small_params()))
    return work


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def snakemake(work: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "snakemake"), "--cores", "1", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


def tables(work: Path) -> dict[str, str]:
    """The md and csv files of every experiment whose numbers are not timings."""
    reports = work / "results/reports/smoke"
    timed = {name for name, e in experiments.EXPERIMENTS.items() if e.measured}
    files = [f for f in experiments.report_files() if f.split(".")[0] not in timed]
    assert files and len(files) < len(experiments.report_files())
    return {f: plain_numbers(reports / f) for f in files if f.endswith((".csv", ".md"))}


def plain_numbers(path: Path) -> str:
    """A report without its provenance line (the checkout, uncommitted changes or not, may
    differ where the numbers do not) and its cost line (timings)."""
    return re.sub(r"(?m)^(Provenance|Cost): .*$", "", path.read_text())


def interrupt_after_two_runs(command: list[str], work: Path) -> set[str]:
    """Start the workflow, press Ctrl-C once two runs have their maps; the runs done."""
    proc = subprocess.Popen(
        command,
        cwd=work,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = work / "results/runs/smoke"
    deadline = time.time() + 300
    while len(list(runs.glob("*/maps/protocol.json"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    return {p.parts[-3] for p in runs.glob("*/maps/protocol.json")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small grid run from start to end by Snakemake (the reference for other tests)."""
    work = project(tmp_path_factory.mktemp("snake"))
    run = snakemake(work, "all")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return work


def test_snakemake_produces_every_table_and_figure(finished):
    for f in experiments.report_files():
        assert (finished / "results/reports/smoke" / f).is_file(), f
    for f in experiments.figure_files(small_params()):
        assert (finished / "results/figures/smoke" / f).is_file(), f
    names = list(grid.grid_points(small_params(), "all"))
    assert len(names) == 6
    for name in names:
        run = finished / "results/runs/smoke" / name
        assert (run / "metrics.json").is_file() and (run / "model.pt").is_file()
        assert (finished / f"logs/smoke/train/{name}.log").is_file()
        record = json.loads((run / "provenance.json").read_text())  # the job measures itself
        assert record["cpu_s"] > 0 and record["wall_s"] > 0
    assert "Nothing to be done" in snakemake(finished, "-n").stdout
    log = (finished / "results/data/synthetic.json").read_text()
    assert '"dataset": "synthetic"' in log


def _dry_jobs(work: Path) -> dict[str, int]:
    """Job counts per rule of a dry run (Snakemake's job-stats table)."""
    dry = snakemake(work, "-n", "--quiet", "rules")
    counts = {}
    for line in dry.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def test_a_changed_setting_reruns_exactly_what_it_affects(finished, tmp_path):
    runs = grid.grid_points(small_params(), "all")
    params = small_params()
    params["evaluate"]["sigma"] = 2.0  # scored at evaluation, from unsmoothed maps
    (finished / "params.yaml").write_text(yaml.safe_dump(params))
    assert _dry_jobs(finished) == {"evaluate": len(runs), "report": 1, "all": 1}
    params = small_params()
    params["model"]["gamma"] = 0.2  # not a setting of the runs without the constraint
    (finished / "params.yaml").write_text(yaml.safe_dump(params))
    uses_gamma = sum(p.constraint for p in runs.values())
    assert 0 < uses_gamma < len(runs)
    jobs = _dry_jobs(finished)
    assert jobs["train"] == uses_gamma and "prepare_data" not in jobs
    params = small_params()
    params["data"]["synthetic"]["seed"] = 1
    (finished / "params.yaml").write_text(yaml.safe_dump(params))
    assert "prepare_data" in snakemake(finished, "-n").stdout
    (finished / "params.yaml").write_text(yaml.safe_dump(small_params()))
    assert "Nothing to be done" in snakemake(finished, "-n").stdout


def test_interrupted_snakemake_finishes_only_what_is_missing(finished, tmp_path):
    work = project(tmp_path)
    done = interrupt_after_two_runs([str(BIN / "snakemake"), "--cores", "1", "all"], work)
    assert 2 <= len(done) < 6
    resumed = snakemake(work, "all")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trained = resumed.stdout.count("(Rule: train)") + resumed.stderr.count("(Rule: train)")
    assert trained <= 6 - len(done) + 1  # the interrupted job, at most, runs again
    assert tables(work) == tables(finished)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("top_k", 7, "main.top_k: 7 with main.experts 5"),  # the key, not a run's name
        ("backbone", "ViT-L-14-999", "main.backbone"),  # a typo, caught by the schema
    ],
)
def test_bad_settings_fail_before_anything_runs(tmp_path, key, value, message):
    params = small_params()
    params["main"][key] = value
    work = project(tmp_path, params=params)
    run = snakemake(work, "all")
    assert run.returncode != 0
    assert message in run.stdout + run.stderr
    assert not (work / "results").exists()


def test_a_failed_job_shows_its_reason_and_its_log_in_the_terminal(tmp_path):
    """The profile keeps Snakemake quiet (no rule details, so no failed log either): each
    job's `cnc --log` writes its log and tells the terminal the first error line."""
    params = small_params()
    params["scales"]["smoke"]["backbone"] = {"weights": "/nowhere/clip.pt"}
    work = project(tmp_path, params=params)
    run = snakemake(work, "--cores", "2", "all")
    assert run.returncode != 0
    shown = run.stdout + run.stderr
    assert "cnc: error: backbone.weights /nowhere/clip.pt: no such checkpoint file" in shown
    log = re.search(r"\(log: (logs/smoke/train/[^)]+\.log)\)", shown)
    assert log, shown[-3000:]
    assert "no such checkpoint file" in (work / log.group(1)).read_text()


def test_the_log_option_sends_output_to_its_file_and_the_reason_to_the_terminal(tmp_path):
    log = tmp_path / "logs" / "x.log"
    done = subprocess.run(
        [str(BIN / "cnc"), "--log", str(log), "data", "check", str(tmp_path / "none")],
        capture_output=True, text=True, env=env(),
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    assert "none: dataset root not found" in log.read_text()
    done = subprocess.run(
        [str(BIN / "cnc"), "--log", str(log), "evaluate", str(tmp_path / "none")],
        capture_output=True, text=True, env=env(),
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(f"cnc: error: {tmp_path / 'none'}: no such run folder")
    assert f"(log: {log})" in done.stderr
    assert "error:" in log.read_text()


def test_a_key_given_twice_stops_snakemake_too(tmp_path):
    work = project(tmp_path)
    text = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(text + "\nseeds: [1]\n")
    run = snakemake(work, "-n")
    assert run.returncode != 0
    shown = run.stdout + run.stderr
    assert "params.yaml, line" in shown and "key 'seeds' is given twice" in shown


def test_the_paper_scale_needs_its_datasets_listed(tmp_path):
    params = small_params()
    params["scale"] = "paper"
    work = project(tmp_path, params=params)
    run = snakemake(work, "-n")
    assert run.returncode != 0
    assert "add mvtec, visa to data.prepare" in run.stdout + run.stderr
    params["data"]["prepare"] = ["mvtec", "visa"]
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    # The jobs and their commands shown: without the quiet profile
    dry = snakemake(work, "-n", "--workflow-profile", "none", "--printshellcmds")
    assert dry.returncode == 0, dry.stderr[-2000:]
    shown = dry.stdout + dry.stderr
    assert "results/runs/paper/" in shown and "ViT-L-14-336" in shown


def test_snakemake_lint_is_clean():
    lint = snakemake(ROOT, "--lint", "--nolock")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "Lints for" not in lint.stdout + lint.stderr


# ----------------------------------------------------------------------------- DVC


def test_dvc_files_are_generated_from_params_and_current():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert dvcfile.write(params, ROOT, check=True) == []  # dvc.yaml and choices/dvc.yaml
    assert (ROOT / "choices/dvc.yaml").read_text() == dvcfile.render(params, "choices")
    result = runner.invoke(app, ["workflow", "dvc", "--check"])
    assert result.exit_code == 0, result.output


def test_the_choices_target_trains_only_its_variants(finished):
    """Opt-in (not in `all`): the variants are trained, the shared main run is reused."""
    assert not (finished / "results/reports/smoke/tableS1.md").exists()
    run = snakemake(finished, "choices")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (run.stdout + run.stderr).count("(Rule: train)") == 2  # the two variants
    table = (finished / "results/reports/smoke/tableS1.md").read_text()
    assert "Table S1: sensitivity to choices the paper leaves open" in table
    for row in ("reference (main configuration)", "model.noise_std = 0.2", "evaluate.sigma = 0"):
        assert f"| {row} |" in table.replace("**", "").replace("<u>", "").replace("</u>", "")
    assert "Cost: Table S1 adds 2 runs" in table
    runs = finished / "results/runs/smoke"
    name = "mvtec-vitl14_336-r224-mlf-cnc-moeT5K2-noise_std_0.2-s0"
    config = yaml.safe_load((runs / name / "config.json").read_text())
    assert config["model"]["noise_std"] == 0.2
    sigma = json.loads((runs / f"{MAIN[:-3]}-sigma_0-s0" / "metrics.json").read_text())
    assert sigma["protocol"]["smoothing_sigma"] == 0


def test_the_benchmarks_target_renders_the_per_dataset_table_from_the_replicas(finished):
    """Opt-in: the main configuration on every prepared dataset; at the smoke scale the
    replicas of MVTec AD 2, MPDD, BTAD and Real-IAD, converted by their converters."""
    run = snakemake(finished, "benchmarks")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (run.stdout + run.stderr).count("(Rule: train)") == 4  # MVTec AD's, VisA's reused
    table = (finished / "results/reports/smoke/benchmarks.md").read_text()
    means = table.split("### per-dataset means")[1].split("###")[0]
    rows = [line.split(" | ")[:2] for line in means.splitlines() if line.startswith("| ")][1:]
    assert rows == [
        ["| MVTec AD", "synthetic"], ["| VisA", "synthetic_visa"],
        ["| MVTec AD 2", "replica_mvtec_ad2"], ["| MPDD", "replica_mpdd"],
        ["| BTAD", "replica_btad"], ["| Real-IAD", "replica_realiad"],
    ]  # fmt: skip
    for section in ("MVTec AD 2", "MPDD", "BTAD", "Real-IAD"):
        assert f"### {section}\n" in table
    assert "| audiojack |" in table and "| 01 |" in table and "| can |" in table
    frame = pd.read_csv(finished / "results/reports/smoke/benchmarks.csv")
    ours = frame[(frame["section"] == "means") & (frame["row"] == "MVTec AD")]
    t1 = pd.read_csv(finished / "results/reports/smoke/table1.csv")
    mean = t1[(t1["row"] == "Mean") & (t1["column"] == "this benchmark")]
    assert ours["value"].tolist()[:5] == mean["value"].tolist()  # the same main run
    manifest = json.loads((finished / "data/replica-mvtec_ad2/manifest.json").read_text())
    assert manifest["replica_of"] == "mvtec_ad2" and manifest["test_set"] == "test_public"


def test_the_paper_scale_lists_the_benchmark_runs_of_the_prepared_datasets(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scale"] = "paper"
    params["data"]["prepare"] = ["mvtec", "visa", "btad", "realiad"]
    work = project(tmp_path, params=params)
    dry = snakemake(work, "-n", "benchmarks", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-2000:]
    counts = dict(re.findall(r"(?m)^(\w+)\s+(\d+)$", dry.stdout + dry.stderr))
    assert (counts["prepare_data"], counts["train"], counts["evaluate"]) == ("4", "4", "4")
    listed = snakemake(work, "-n", "benchmarks", "--quiet", "host")
    shown = listed.stdout + listed.stderr
    for name in ("btad", "realiad"):
        assert f"results/runs/paper/{name}-vitl14_336-r224-mlf-cnc-moeT5K2-s0/" in shown
    assert "mpdd-vitl14" not in shown and "mvtec_ad2-vitl14" not in shown  # not prepared


def test_the_paper_scale_lists_a_run_per_choice(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scale"] = "paper"
    params["data"]["prepare"] = ["mvtec", "visa"]
    work = project(tmp_path, params=params)
    dry = snakemake(work, "-n", "choices", "--quiet", "host")
    assert dry.returncode == 0, dry.stderr[-2000:]
    shown = dry.stdout + dry.stderr
    variants = params["experiments"]["tableS1"]["variants"]
    for cell in experiments.cells(params)["tableS1"][1:]:
        assert f"results/runs/paper/{cell.runs[0]}/maps/protocol.json" in shown, cell.row
    assert len(variants) >= 12


def test_snakemake_gives_a_training_job_the_shared_cpu_thread_count(finished):
    """CPU results depend bit for bit on torch's thread count: the smoke scale's
    train.threads (1) in every job; DVC's test checks the same. The jobs fork from the
    warm-start server (cnc.pipeline.warm): DVC's start cold, and the engines' tables are
    compared bit for bit."""
    for log in (finished / "logs/smoke/train").glob("*.log"):
        assert "on cpu, 1 CPU thread(s), warm start" in log.read_text(), log
    provenance = json.loads((finished / f"results/runs/smoke/{MAIN}/provenance.json").read_text())
    assert provenance["machine"]["cpu_threads"] == 1
    assert "CPU threads 1" in (finished / "results/reports/smoke/table1.md").read_text()


def test_a_job_uses_the_threads_snakemake_gives_it_never_more_than_the_cores(tmp_path):
    """train.threads asks; Snakemake caps it at --cores and passes it on (OMP_NUM_THREADS)."""
    params = small_params()
    params["scales"]["smoke"]["train"]["threads"] = 2
    target = f"results/runs/smoke/{MAIN}/maps/protocol.json"
    for cores in (1, 2):
        work = project(tmp_path, f"cores{cores}", params)
        run = snakemake(work, "--cores", str(cores), target)  # after "--cores 1": the last wins
        assert run.returncode == 0, run.stderr[-3000:]
        log = (work / f"logs/smoke/train/{MAIN}.log").read_text()
        assert f"on cpu, {cores} CPU thread(s)" in log, log


def test_a_tracked_dvc_lock_agrees_with_params_yaml():
    """dvc.lock records one user's last `dvc repro`, so it is not tracked; were it
    committed, it would have to record the params.yaml it is committed with."""
    tracked = subprocess.run(
        ["git", "ls-files", "dvc.lock"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    if tracked:
        lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
        assert dvcfile.lock_problems(lock, yaml.safe_load((ROOT / "params.yaml").read_text())) == []
    assert "dvc.lock" not in (ROOT / ".gitignore").read_text()  # DVC refuses an ignored lock


def test_a_stale_dvc_lock_is_named_key_by_key():
    params = small_params()
    lock = {
        "stages": {
            "prepare_data@synthetic": {
                "params": {"params.yaml": {"data.synthetic": {"root": "data/synthetic"}}}
            },
            "report": {"params": {"params.yaml": {"seeds": [0], "scale": "smoke"}}},
        }
    }
    stale = dvcfile.lock_problems(lock, params)
    assert stale == [
        "dvc.lock: prepare_data@synthetic records data.synthetic = {'root': 'data/synthetic'}, "
        f"params.yaml has {params['data']['synthetic']!r}"
    ]
    lock["stages"]["prepare_data@synthetic"]["params"]["params.yaml"]["data.synthetic"] = params[
        "data"
    ]["synthetic"]
    assert dvcfile.lock_problems(lock, params) == []


def test_a_stale_dvc_yaml_is_detected(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params()))
    args = ["workflow", "dvc", "--params", str(tmp_path / "params.yaml")]
    args += ["--root", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, [*args, "--check"]).exit_code == 0
    params = small_params()
    params["seeds"] = [0, 1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stale = runner.invoke(app, [*args, "--check"])
    assert stale.exit_code == 1 and "stale" in stale.output
    assert "dvc.yaml" in stale.output and "choices/dvc.yaml" in stale.output


def _snakemake_outputs(work: Path, target: str = "all") -> set[str]:
    summary = snakemake(work, target, "--summary", "--nolock")
    assert summary.returncode == 0, summary.stderr[-2000:]
    return {line.split("\t")[0] for line in summary.stdout.splitlines()[1:] if line.strip()}


def _dvc_outputs(work: Path, pipeline: str = "dvc.yaml") -> set[str]:
    from dvc.repo import Repo

    with Repo(str(work)) as repo:
        return {
            str(Path(out.fs_path).relative_to(work))
            for stage in repo.index.stages
            if Path(stage.path).relative_to(work).as_posix() == pipeline
            for out in stage.outs
        }


def _runs_and_reports(paths: set[str]) -> tuple[set[str], set[str]]:
    runs = {p.split("/")[3] for p in paths if p.startswith("results/runs/")}
    reports = {p for p in paths if p.startswith(("results/reports/", "results/figures/"))}
    return runs, reports


def test_snakemake_and_dvc_enumerate_the_same_runs_and_paths():
    snake = _snakemake_outputs(ROOT)
    dvc = _dvc_outputs(ROOT)
    assert _runs_and_reports(snake) == _runs_and_reports(dvc)
    assert len(_runs_and_reports(snake)[0]) == 43
    # Each file Snakemake tracks for a run is a DVC output or lies inside one (maps/).
    for path in (p for p in snake if p.startswith("results/runs/")):
        assert any(path == d or path.startswith(d + "/") for d in dvc) or path.endswith(
            "train_log.csv"
        ), path
    # The opt-in targets: their own runs in <target>/dvc.yaml, shared ones in dvc.yaml.
    shared = set(_runs_and_reports(dvc)[0])
    for target in ("choices", "benchmarks"):
        snake_runs, snake_reports = _runs_and_reports(_snakemake_outputs(ROOT, target))
        dvc_runs, dvc_reports = _runs_and_reports(_dvc_outputs(ROOT, f"{target}/dvc.yaml"))
        assert snake_reports == dvc_reports and dvc_runs == snake_runs - shared, target
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert len(_runs_and_reports(_dvc_outputs(ROOT, "choices/dvc.yaml"))[0]) == len(
        params["experiments"]["tableS1"]["variants"])  # fmt: skip
    assert len(_runs_and_reports(_dvc_outputs(ROOT, "benchmarks/dvc.yaml"))[0]) == 4


def test_dvc_repro_resumes_and_builds_the_same_tables_as_snakemake(finished, tmp_path):
    work = project(tmp_path, "dvc")
    dvcfile.write(small_params(), work)
    shutil.copytree(ROOT / "cnc", work / "cnc")  # the code the stages depend on
    dvc = str(BIN / "dvc")
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=work, check=True, env=env())
    subprocess.run([dvc, "config", "core.analytics", "false"], cwd=work, check=True, env=env())
    # Interrupted part-way (Ctrl-C), then started again: only what is missing runs.
    assert 2 <= len(interrupt_after_two_runs([dvc, "repro"], work)) < 6
    assert not (work / "results/reports/smoke/table1.md").exists()
    run = subprocess.run(
        [dvc, "repro"], cwd=work, capture_output=True, text=True, timeout=900, env=env()
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("Running stage 'train@") < 6
    assert "on cpu, 1 CPU thread(s)\n" in run.stdout  # as in Snakemake
    assert tables(work) == tables(finished)
    again = subprocess.run(
        [dvc, "status", "dvc.yaml"], cwd=work, capture_output=True, text=True, env=env()
    )
    assert "up to date" in again.stdout, again.stdout
    shown = subprocess.run([dvc, "plots", "show", "--json"], cwd=work, capture_output=True,
                           text=True, env=env())  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    plots = json.loads(shown.stdout)  # the opt-in runs, not trained, are no error
    assert set(plots) == {"data"}, str(plots.get("errors"))[:2000]
    reports = {"results/reports/smoke/table2-means.csv", "results/reports/smoke/fig4.csv"}
    logs = {
        f"results/runs/smoke/{n}/train_log.csv" for n in grid.grid_points(small_params(), "all")
    }
    assert set(plots["data"]) == reports | logs
    shown = subprocess.run(
        [dvc, "metrics", "show"], cwd=work, capture_output=True, text=True, env=env()
    ).stdout
    assert "headline.json" in shown and "table1.mtotal" in shown
    assert max(map(len, shown.splitlines())) <= 160 and len(shown.splitlines()) <= 5
    # The opt-in pipeline: its variants only, then Table S1 as Snakemake renders it.
    choices = subprocess.run(
        [dvc, "repro", "choices/dvc.yaml"], cwd=work, capture_output=True, text=True, env=env()
    )
    assert choices.returncode == 0, choices.stdout[-3000:] + choices.stderr[-3000:]
    assert choices.stdout.count("Running stage 'choices/dvc.yaml:train@") == 2
    assert snakemake(finished, "choices").returncode == 0  # a no-op once it has run
    for ext in ("md", "csv"):
        table = f"results/reports/smoke/tableS1.{ext}"
        assert plain_numbers(work / table) == plain_numbers(finished / table)


def test_dvc_adopts_snakemakes_outputs_and_diffs_the_headline_across_commits(finished, tmp_path):
    """README's recipe: after `snakemake all`, `dvc commit -f dvc.yaml` records what
    Snakemake made (nothing to rerun); the headline metrics and the plots' data are in
    DVC's cache, so `dvc metrics diff` compares them with an older commit."""
    work = tmp_path / "adopted"
    shutil.copytree(finished, work, ignore=shutil.ignore_patterns(".snakemake"))
    dvcfile.write(small_params(), work)
    shutil.copytree(ROOT / "cnc", work / "cnc")

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env())
        assert done.returncode == 0, " ".join(command) + "\n" + done.stdout + done.stderr
        return done.stdout

    dvc, git = str(BIN / "dvc"), ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run(dvc, "config", "core.analytics", "false")
    run(dvc, "commit", "-f", "dvc.yaml")
    assert "up to date" in run(dvc, "status", "dvc.yaml")
    assert "Running stage" not in run(dvc, "repro", "--dry", "dvc.yaml")
    run("git", "add", "-A")
    run(*git, "commit", "-qm", "adopted")
    headline = work / "results/reports/smoke/headline.json"
    before = json.loads(headline.read_text())
    changed = {**before, "table1": {**before["table1"], "mtotal": before["table1"]["mtotal"] + 1}}
    headline.unlink()  # DVC may have linked it to its cache
    headline.write_text(json.dumps(changed))
    run(dvc, "commit", "-f", "report")
    run(*git, "commit", "-qam", "changed")
    diff = run(dvc, "metrics", "diff", "HEAD~1", "--json")
    entry = json.loads(diff)["results/reports/smoke/headline.json"]
    assert entry["table1.mtotal"]["old"] == before["table1"]["mtotal"]
    assert entry["table1.mtotal"]["diff"] == pytest.approx(1.0)


CHROMIUM = shutil.which("chromium")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: apt-get install chromium")
def test_the_html_report_renders_in_a_real_browser(finished, tmp_path):
    """`snakemake --report`: one self-contained page that opens offline; Table 1 shows the
    mean I-AUROC of this benchmark as its CSV has it; a heat map loads. Screenshots in
    tmp_path (README's is such a screenshot)."""
    import pandas as pd
    from playwright.sync_api import sync_playwright

    built = snakemake(finished, "--report", str(tmp_path / "report.html"))
    assert built.returncode == 0, built.stderr[-2000:]
    table = pd.read_csv(finished / "results/reports/smoke/table1.csv")
    mean = table[(table["row"] == "Mean") & (table["column"] == "this benchmark")]
    i_auroc = f"{mean[mean['metric'] == 'i_auroc']['value'].item():.1f}"
    errors: list[str] = []
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1800, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((tmp_path / "report.html").as_uri())
        page.wait_for_selector("text=Not comparable to the paper")  # the front page
        page.click("text=Tables")
        page.click("tr:has-text('Table 1') a[iconname=eye]")
        page.wait_for_timeout(1000)
        frames = [f.inner_text("body") for f in page.frames[1:]]
        page.screenshot(path=str(tmp_path / "table1.png"))
        assert any("Table 1" in f and i_auroc in f for f in frames), (i_auroc, frames)
        page.click("text=Results")
        page.click("text=Heat maps")
        page.click("a[iconname=eye] >> nth=0")
        page.wait_for_timeout(1000)
        widths = page.eval_on_selector_all(
            "img[src^='data:image/png']", "images => images.map(i => i.naturalWidth)"
        )
        page.screenshot(path=str(tmp_path / "heatmap.png"))
        browser.close()
    assert widths and all(w > 0 for w in widths)
    assert errors == []

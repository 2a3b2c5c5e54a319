"""Project wiring: README and CI agree, params.yaml and its schema, the workflow runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnc.config import ConfigError, load_params, validate_params

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    quick = ROOT.joinpath("README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", quick, flags=re.S)


def test_readme_has_two_commands_and_ci_runs_the_test_one_verbatim():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("snakemake --cores 1 all")
    ci_lines = ROOT.joinpath(".ci/run").read_text().splitlines()
    assert commands[1] in ci_lines
    assert "set -euo pipefail" in ci_lines  # a failing or empty pytest run fails CI


def test_params_yaml_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert "synthetic" in params["data"]["prepare"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda p: p["data"]["synthetic"].update(sed=1), "data.synthetic"),
        (lambda p: p["data"]["synthetic"].update(image_size=8), "data.synthetic.image_size"),
        (lambda p: p["data"].update(prepare=["mvtech"]), "data.prepare.0"),
        (lambda p: p.update(scale="huge"), "scale"),
    ],
)
def test_schema_errors_name_the_key(change, key):
    params = yaml.safe_load(ROOT.joinpath("params.yaml").read_text())
    change(params)
    with pytest.raises(ConfigError) as info:
        validate_params(params, "params.yaml")
    assert f"\n  {key}:" in str(info.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")


def _project_copy(tmp_path: Path) -> Path:
    work = tmp_path / "project"
    work.mkdir()
    for name in ("Snakefile", "workflow", "profiles", "environment.yml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    params = yaml.safe_load(ROOT.joinpath("params.yaml").read_text())
    params["data"]["synthetic"].update(
        image_size=48, train_per_class=2, test_per_class=3, classes=["wood", "chip"]
    )
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return work


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run(
        [str(exe), "--cores", "1", *args], cwd=work, capture_output=True, text=True, timeout=300
    )


def test_snakemake_prepares_the_synthetic_data_and_reruns_on_param_change(tmp_path):
    work = _project_copy(tmp_path)
    run = _snakemake(work, "all")
    assert run.returncode == 0, run.stderr
    record = yaml.safe_load((work / "results/data/synthetic.json").read_text())
    assert sorted(record["counts"]) == ["chip", "wood"]
    assert (work / "logs/data/synthetic.log").is_file()

    assert "Nothing to be done" in _snakemake(work, "-n").stdout
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["synthetic"]["seed"] = 1
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    dry = _snakemake(work, "-n")
    assert "prepare_data" in dry.stdout


def test_snakemake_rejects_bad_config_before_running(tmp_path):
    work = _project_copy(tmp_path)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["prepare"] = ["synthetc"]
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    run = _snakemake(work, "all")
    assert run.returncode != 0
    assert "synthetc" in run.stdout + run.stderr
    assert not (work / "results").exists()

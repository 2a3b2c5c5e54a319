"""Project wiring: README and CI agree, params.yaml and its schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cnc.cli import app
from cnc.errors import SettingsError
from cnc.params import load_params, validate_params
from cnc.pipeline import dvcfile

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
        (lambda p: p["data"]["synthetic"].update(sed=1), "data.synthetic.sed"),
        (lambda p: p["data"]["synthetic"].update(image_size=8), "data.synthetic.image_size"),
        (lambda p: p["data"].update(prepare=["mvtech"]), "data.prepare.0"),
        (lambda p: p.update(scale="huge"), "scale"),
    ],
)
def test_schema_errors_name_the_key(change, key):
    params = yaml.safe_load(ROOT.joinpath("params.yaml").read_text())
    change(params)
    with pytest.raises(SettingsError) as info:
        validate_params(params, "params.yaml")
    assert f"\n  {key}:" in str(info.value)


def test_a_key_given_twice_in_params_yaml_is_an_error(tmp_path):
    text = ROOT.joinpath("params.yaml").read_text() + "\nseeds: [1]\n"
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(SettingsError, match="key 'seeds' is given twice") as info:
        load_params(tmp_path / "params.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'params.yaml'}, line ")  # names the file


def test_dvc_checks_the_whole_params_file_on_any_change(tmp_path):
    """DVC runs no stage for a change no stage tracks (a misspelt section); its first
    stage tracks the whole file and fails on the typo as Snakemake does."""
    stage = yaml.safe_load(dvcfile.render(load_params(ROOT / "params.yaml")))["stages"]
    assert stage["check_params"]["params"] == [{"params.yaml": None}]
    assert stage["check_params"]["cmd"] == "cnc workflow check --params params.yaml"
    text = ROOT.joinpath("params.yaml").read_text() + "\nevalute: {sigma: 2}\n"
    (tmp_path / "params.yaml").write_text(text)
    result = CliRunner().invoke(
        app, ["workflow", "check", "--params", str(tmp_path / "params.yaml")]
    )
    assert result.exit_code == 1 and "evalute: unknown key" in result.output
    ok = CliRunner().invoke(app, ["workflow", "check", "--params", str(ROOT / "params.yaml")])
    assert ok.exit_code == 0 and "valid (" in ok.output


def test_help_text_flows_to_the_terminal_width():
    """Docstrings are reflowed, not broken where the source breaks its lines."""
    wide = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "over them a run of the grid (--run) or a settings file" in wide.output
    narrow = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "80"})
    assert max(map(len, narrow.output.splitlines())) <= 80


def test_missing_params_file(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_params(tmp_path / "params.yaml")


# ----------------------------------------------------------------------------- the package


def import_graph() -> dict[str, set[str]]:
    """Module -> the `cnc` modules it imports (at the top or inside a function), from the
    sources; `from cnc.pkg import name` counts as importing cnc.pkg.name where that is a
    module."""
    import ast

    package = ROOT / "cnc"
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("cnc")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnc"):
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    found.add(child if child in modules else node.module)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = " -> ".join([*path[path.index(module) :], module])
            pytest.fail(f"import cycle: {cycle}")
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert "cnc.pipeline.warm" in graph and len(graph) > 50


def test_nothing_below_the_command_line_imports_it():
    importers = sorted(m for m, imported in import_graph().items() if "cnc.cli" in imported)
    assert importers == []


def test_the_command_line_module_stays_thin():
    lines = ROOT.joinpath("cnc/cli.py").read_text().count("\n")
    assert lines <= 350, f"cnc/cli.py has {lines} lines: move logic below it"

"""The command line: user errors are one clear message, bugs keep their traceback."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from typer.testing import CliRunner

import cnc
from cnc import errors
from cnc.cli import app

runner = CliRunner()


def package_modules():
    for info in pkgutil.walk_packages(cnc.__path__, "cnc."):
        yield importlib.import_module(info.name)


def test_every_error_class_of_the_package_is_a_user_error():
    found = {
        obj
        for module in package_modules()
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Exception) and obj.__module__.startswith("cnc.")
    }
    assert len(found) >= 10, found  # the data, model, train, maps, metrics and report errors
    assert all(issubclass(cls, errors.UserError) for cls in found), [
        c for c in found if not issubclass(c, errors.UserError)
    ]


def test_a_user_error_is_one_message_without_traceback(tmp_path):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_an_internal_bug_keeps_its_traceback(tmp_path, monkeypatch):
    import cnc.evaluation.evaluate

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(cnc.evaluation.evaluate, "evaluate_run", broken)
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, ValueError)  # not swallowed into "error: ..."
    assert "error:" not in result.output


@pytest.mark.parametrize("name", ["SettingsError", "MissingFileError", "AlreadyExistsError"])
def test_user_errors_are_also_the_builtin_they_resemble(name):
    cls = getattr(errors, name)
    builtin = {"SettingsError": ValueError, "MissingFileError": FileNotFoundError}.get(
        name, FileExistsError
    )
    assert issubclass(cls, errors.UserError) and issubclass(cls, builtin)

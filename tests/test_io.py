"""File helpers: what they write is readable as the umask allows, never half-written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cnc.io import atomic_dir, write_json


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_written_files_and_folders_get_the_modes_the_umask_allows(tmp_path, umask):
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert mode(tmp_path / "metrics.json") == 0o666 & ~umask
    with atomic_dir(tmp_path / "maps") as tmp:
        write_json(tmp / "wood.json", {})
    assert mode(tmp_path / "maps") == 0o777 & ~umask
    assert mode(tmp_path / "maps" / "wood.json") == 0o666 & ~umask
    assert os.umask(umask) == umask  # reading the umask left it as it was


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
    write_json(tmp_path / "x.json", {"old": True})
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"new": object()})
    assert (tmp_path / "x.json").read_text() == '{\n  "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]

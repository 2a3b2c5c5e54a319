"""Crash consistency: each step killed at the file-system changes it makes (tests/crash.py)
leaves what a reader sees as before or after the step, or refused, and its rerun ends as
an uninterrupted run ends. `python tests/crash.py DIR --every` kills at every change."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("crash.py")
# Two harness processes at once (the machine's two cores), each with its own runs.
GROUPS = (["train", "evaluate", "predict"], ["infer", "report"])


@pytest.mark.slow
def test_a_killed_step_leaves_no_mixed_state_and_its_rerun_recovers(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, str(HARNESS), str(tmp_path / f"group{i}"), *steps],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, steps in enumerate(GROUPS)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
        results += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert sorted(r["step"] for r in results) == sorted(s for g in GROUPS for s in g)
    for r in results:
        assert not r["failures"], (r["step"], r["failures"][:5])
        assert len(r["kill_points"]) >= 10, r
        # every kind of outcome happens: the kill points reach into the commit
        assert r["seen"]["refused"] + r["seen"]["after"] > 0, r
        assert r["seen"]["before"] > 0, r
    print({r["step"]: (r["changes"], len(r["kill_points"]), r["seen"]) for r in results})

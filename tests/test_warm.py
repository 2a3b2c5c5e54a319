"""The warm start (cnc.pipeline.warm): a command forked from the server is the command, bit for bit,
with the client's folder, environment, code, streams and exit status; it ends with its
client; anything the server cannot serve runs cold."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import SPEC, config

from cnc.data.prepare import synthetic
from cnc.evaluation.maps import read_protocol
from cnc.pipeline import warm
from cnc.runs import FINAL, load_checkpoint

CNC = str(Path(sys.executable).parent / "cnc")
TRAIN_SETTINGS = {"epochs": 2, "batch_size": 4}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("data")) / "synthetic"
    synthetic(SPEC, root)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("warm") / "warm.log"
    value = warm.start(os.getpid(), log)
    assert value, log.read_text()
    yield value
    warm.stop(value)
    assert not Path(json.loads(value)["socket"]).parent.exists()


def cnc(*args: str, cwd: Path, value: str | None, **env: str) -> subprocess.CompletedProcess:
    variables = {k: v for k, v in os.environ.items() if k != warm.ENV}
    variables.update(env, **({warm.ENV: value} if value else {}))
    return subprocess.run(
        [CNC, *args], cwd=cwd, env=variables, capture_output=True, text=True, timeout=300
    )


def gone(pid: int, within_s: float = 15) -> bool:
    """Ended within `within_s` (a zombie has ended: only its parent's wait is missing)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_a_warm_training_job_is_the_cold_one_bit_for_bit(server, data_root, tmp_path):
    settings = config(data_root, **TRAIN_SETTINGS).to_json()
    runs = {}
    for name, value in (("cold", None), ("warm", server)):
        done = cnc("train", name, "--settings", settings, "--no-progress",
                   cwd=tmp_path, value=value, OMP_NUM_THREADS="1")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "1 CPU thread(s)" in done.stdout  # the client's OMP_NUM_THREADS
        assert ("warm start" in done.stdout) == (name == "warm")
        runs[name] = load_checkpoint(tmp_path / name / FINAL)["model"]  # relative to cwd
    assert all(torch.equal(runs["cold"][k], runs["warm"][k]) for k in runs["cold"])
    # The maps' content digests (protocol.json; the files themselves hold the zip's times).
    cold, warm = (read_protocol(tmp_path / name / "maps")["maps"] for name in ("cold", "warm"))
    assert cold and cold == warm
    two = cnc("train", "two", "--settings", settings, "--no-progress",
              cwd=tmp_path, value=server, OMP_NUM_THREADS="2")  # fmt: skip
    assert "2 CPU thread(s), warm start" in two.stdout


def test_a_failing_command_reports_its_error_and_status(server, tmp_path):
    done = cnc("evaluate", "nowhere", cwd=tmp_path, value=server)
    assert done.returncode == 1
    assert "nowhere: no such run folder" in done.stderr and not (tmp_path / "nowhere").exists()
    usage = cnc("train", "--no-such-option", cwd=tmp_path, value=server)
    assert usage.returncode == 2 and "No such option" in usage.stderr


def test_the_child_runs_the_clients_code_not_the_servers(server, tmp_path):
    """Code edited after the server started is the code that runs: `cnc` is imported
    afresh in each child, from the client's import path."""
    edited = tmp_path / "edited"
    shutil.copytree(Path(warm.__file__).parents[1], edited / "cnc")
    for module in ("cli", "warm"):  # warm: imported by the server itself, and by cli
        source = edited / ("cnc/cli.py" if module == "cli" else "cnc/pipeline/warm.py")
        source.write_text(source.read_text() + f"\nprint('edited {module} imported')\n")
    done = cnc("--help", cwd=tmp_path, value=server, PYTHONPATH=str(edited))
    assert done.returncode == 0, done.stderr
    for module in ("cli", "warm"):  # in the client, then in the child
        assert done.stdout.count(f"edited {module} imported") == 2, module
    cold = cnc("--help", cwd=tmp_path, value=None, PYTHONPATH=str(edited))
    assert cold.stdout.count("edited cli imported") == 1


def test_the_command_ends_with_its_client(server, data_root, tmp_path):
    settings = config(data_root, epochs=500, batch_size=4).to_json()
    variables = {**os.environ, warm.ENV: server}
    client = subprocess.Popen([CNC, "train", "long", "--settings", settings, "--no-progress"],
                              cwd=tmp_path, env=variables)  # fmt: skip
    lock = tmp_path / "long/.lock"  # names the process that holds the run
    deadline = time.time() + 60
    while not (lock.is_file() and lock.read_text().strip()) and time.time() < deadline:
        time.sleep(0.1)
    child = int(lock.read_text().split()[1])  # "pid N on HOST since ..."
    assert child != client.pid  # the server's child trains
    client.send_signal(signal.SIGKILL)  # killed outright: no chance to forward anything
    client.wait()
    assert gone(child)


def test_what_the_server_cannot_serve_runs_cold(server, tmp_path, monkeypatch):
    record = json.loads(server)
    elsewhere = json.dumps({**record, "host": "another-node"})  # a cluster job
    other_python = json.dumps({**record, "prefix": "/another/env"})
    no_answer = json.dumps({**record, "socket": str(tmp_path / "no-socket")})
    for value in (elsewhere, other_python, no_answer, "not json"):
        monkeypatch.setenv(warm.ENV, value)
        assert warm.delegate(["cnc", "--help"]) is None
        done = cnc("--help", cwd=tmp_path, value=value)
        assert done.returncode == 0 and "Usage" in done.stdout, done.stderr


def test_the_server_ends_with_its_owner(tmp_path):
    owner = subprocess.Popen(["sleep", "120"])
    value = warm.start(owner.pid, tmp_path / "warm.log")
    assert value
    record = json.loads(value)
    owner.kill()
    owner.wait()
    assert gone(record["pid"])
    assert not Path(record["socket"]).parent.exists()  # its folder removed

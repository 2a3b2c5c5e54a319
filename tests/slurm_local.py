"""A one-node SLURM cluster on localhost (Debian's slurm-wlm), for the executor test.

munged, slurmctld and slurmd are started with a configuration written to a temporary
folder and stopped afterwards. The configuration is also placed at the default path
/etc/slurm/slurm.conf while the cluster runs, because the executor plugin's job step
drops SLURM_CONF from the environment of the `srun` it starts inside each job; an
existing file there (a real cluster) is never touched: the test is skipped instead.
Needs root (the daemons run as root, munged as its own user).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
MUNGE_SOCKET_DIR = Path("/run/munge")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")

CONF = """\
ClusterName=cnctest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldPort={port}
SlurmdPort={port2}
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def unavailable() -> str | None:
    """Why a local cluster cannot be started here, or None."""
    missing = [d for d in DAEMONS if not Path(d).exists()]
    if missing:
        return f"slurm-wlm/munge not installed ({', '.join(missing)}); apt-get install slurm-wlm"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd needs root"
    if DEFAULT_CONF.exists():
        return f"{DEFAULT_CONF} exists (a configured SLURM); the test does not touch it"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_munge() -> bool:
    """Start munged unless it runs; True when this call started it."""
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return False
    MUNGE_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", DAEMONS[0]], check=True)
    return True


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise TimeoutError(f"the local SLURM cluster did not come up: {what}")


@contextmanager
def local_cluster(root: Path) -> Iterator[dict[str, str]]:
    """Start the cluster; yields the environment for SLURM client commands."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    (root / "spool").mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    conf = root / "slurm.conf"
    conf.write_text(
        CONF.format(
            host=host,
            root=root,
            port=_free_port(),
            port2=_free_port(),
            cpus=os.cpu_count(),
            memory=memory,
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(conf, DEFAULT_CONF)
    started_munge = _start_munge()
    subprocess.run([DAEMONS[1], "-f", str(conf)], check=True, env=env)
    subprocess.run([DAEMONS[2], "-f", str(conf)], check=True, env=env)
    try:

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, env=env)
            return out.stdout.strip() in (b"idle", b"mix")

        _wait(idle, f"node not idle (see {root}/slurmctld.log)")
        yield env
    finally:
        for pid_file in ("slurmd.pid", "slurmctld.pid"):
            path = root / pid_file
            if path.is_file():
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(path.read_text().strip()), signal.SIGTERM)
        if started_munge:
            subprocess.run(["pkill", "-x", "munged"], check=False)
        DEFAULT_CONF.unlink(missing_ok=True)

"""A warm start for the workflow's many short jobs.

A smoke training job computes for about 2 s and spends 3 s importing torch, open_clip
(which imports torchvision and, through it, torch._dynamo) and the scientific stack.
`start` launches a server that imports them once; while it runs, a `cnc` command
(`cnc.cli.main`) hands its arguments, working folder, environment, import path and
standard streams (the file descriptors themselves, over a Unix socket) to the server,
which forks a child that runs the command exactly as a fresh process would: the `cnc`
package is imported afresh from the client's import path (code edited since the server
started is the code that runs), the thread count comes from the client's
OMP_NUM_THREADS, and the child's exit status is the command's. The child ends when its
client ends, killed included, and the server ends with the process that started it.

A command runs cold, as before, whenever the server cannot serve it: none started, a
socket that does not answer, another host (a cluster job), another Python environment.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

ENV = "CNC_WARM"  # where the server listens: JSON {host, prefix, socket}
COMMAND_LINE = "cnc.cli"  # the module of the command a child runs
# What the jobs import: the third-party modules only, so `cnc` itself is always fresh.
PRELOAD = (
    "torch",
    "torch.utils.flop_counter",
    "open_clip",
    "numpy",
    "scipy.ndimage",
    "matplotlib.figure",  # heat maps (evaluation) and figures (report)
    "PIL.Image",
    "yaml",
    "typer",
    "rich.console",
)
START_TIMEOUT_S = 120.0
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_HEADER = 16  # bytes of the first message: the length of the request that follows


def _address() -> dict[str, str]:
    return {"host": socket.gethostname(), "prefix": sys.prefix}


def start(owner: int, log: Path) -> str | None:
    """Start a server for the process `owner` (it ends when `owner` does); return the
    value of CNC_WARM for the jobs, or None (with the reason on stderr) if it did not
    start, in which case the jobs start cold."""
    folder = Path(tempfile.mkdtemp(prefix="cnc-warm-"))  # private: mode 0700
    path = folder / "socket"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "cnc.pipeline.warm", str(path), str(owner)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the jobs, not it
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            shutil.rmtree(folder, ignore_errors=True)
            print(f"cnc: the warm-start server did not start (see {log}); jobs start cold",
                  file=sys.stderr)  # fmt: skip
            return None
        time.sleep(0.05)
    return json.dumps({**_address(), "socket": str(path), "pid": server.pid})


def stop(value: str | None) -> None:
    """End the server that `start` returned `value` for (nothing if None)."""
    if not value:
        return
    record = json.loads(value)
    with contextlib.suppress(ProcessLookupError):
        os.kill(record["pid"], signal.SIGTERM)
    shutil.rmtree(Path(record["socket"]).parent, ignore_errors=True)


def delegate(argv: list[str]) -> int | None:
    """Run the command `argv` in a child of the server named by CNC_WARM and return its
    exit status; None when no server can run it (the caller then runs it itself)."""
    value = os.environ.get(ENV)
    if not value:
        return None
    try:
        record = json.loads(value)
    except json.JSONDecodeError:
        return None
    if {k: record.get(k) for k in ("host", "prefix")} != _address():
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(record["socket"])
        request = json.dumps(
            {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "path": sys.path}
        ).encode()
        socket.send_fds(client, [str(len(request)).encode().ljust(_HEADER)], [0, 1, 2])
        client.sendall(request)
        reader = client.makefile("r")
        child = int(reader.readline())
    except (OSError, ValueError):
        client.close()
        return None  # nothing ran: run it cold

    def forward(number: int, _frame: object) -> None:  # as if it were our own child
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, number)

    before = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        status = reader.readline()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        client.close()
    if not status:
        print(f"cnc: the command (pid {child}) ended without an exit status (killed?)",
              file=sys.stderr)  # fmt: skip
        return 1
    return int(status)


def in_child() -> bool:
    """Whether this process is a command forked by the warm-start server."""
    try:
        return os.getppid() == json.loads(os.environ.get(ENV) or "{}").get("pid")
    except json.JSONDecodeError:
        return False


def _command_line() -> Any:
    """The `cnc` command's Typer app, imported by name in the child: the command line sits
    above this module, which only runs it."""
    return importlib.import_module(COMMAND_LINE).app


def _run(argv: list[str]) -> int:
    app = _command_line()

    try:
        app(args=argv[1:], prog_name="cnc")
    except SystemExit as end:
        if end.code is None or isinstance(end.code, int):
            return end.code or 0
        print(end.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT
    except BaseException:  # what a fresh interpreter would print
        traceback.print_exc()
        return 1
    return 0


def _child(conn: socket.socket) -> None:
    """In the forked child: become the client's command, run it, report its status."""
    for sig in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    header, fds, _, _ = socket.recv_fds(conn, _HEADER, 3)
    size, request = int(header), b""
    while len(request) < size:
        request += conn.recv(size - len(request))
    job = json.loads(request)
    for number, fd in enumerate(fds):
        os.dup2(fd, number)
        os.close(fd)
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    sys.path[:] = job["path"]
    for name in [m for m in sys.modules if m == "cnc" or m.startswith("cnc.")]:
        del sys.modules[name]  # the client's code, from the client's path
    if "OMP_NUM_THREADS" in job["env"]:
        import torch

        torch.set_num_threads(int(job["env"]["OMP_NUM_THREADS"]))
    conn.sendall(f"{os.getpid()}\n".encode())

    def end_with_client() -> None:  # the client never writes again: EOF = it ended
        conn.recv(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=end_with_client, daemon=True).start()
    code = _run(job["argv"])
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(f"{code}\n".encode())
    os._exit(code)


def serve(path: Path, owner: int) -> None:
    """Import PRELOAD, then fork a child per connection until `owner` ends or SIGTERM."""
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ready = path.with_name(path.name + ".tmp")
    listener.bind(str(ready))
    listener.listen(64)
    listener.settimeout(1.0)
    os.rename(ready, path)  # clients see the socket only once it accepts
    try:
        while True:
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                return
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            if os.fork() == 0:
                listener.close()
                try:
                    _child(conn)
                finally:
                    os._exit(1)  # only reached if the child failed before its command
            conn.close()
    finally:
        listener.close()
        shutil.rmtree(path.parent, ignore_errors=True)  # start's private folder


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))

"""Small data sets, archives and an HTTP server that the tests make themselves."""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def rgb(size: int = 16, value: int = 128) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def square_mask(size: int = 16, lo: int = 4, hi: int = 8) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[lo:hi, lo:hi] = 255
    return mask


def make_mvtec(root: Path, classes: dict[str, tuple[int, int, int]], size: int = 16) -> Path:
    """An MVTec-layout tree with (train, test good, test anomalous) images per class."""
    for cls, (n_train, n_good, n_bad) in classes.items():
        for i in range(n_train):
            write_png(root / cls / "train" / "good" / f"{i:03d}.png", rgb(size, 100 + i))
        for i in range(n_good):
            write_png(root / cls / "test" / "good" / f"{i:03d}.png", rgb(size, 50 + i))
        for i in range(n_bad):
            write_png(root / cls / "test" / "crack" / f"{i:03d}.png", rgb(size, 200 - i))
            write_png(
                root / cls / "ground_truth" / "crack" / f"{i:03d}_mask.png", square_mask(size)
            )
    return root


def tar_bytes(src: Path, mode: str = "w:xz", arcname: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        tar.add(src, arcname=arcname or src.name)
    return buffer.getvalue()


class Server:
    """Serves `files` on 127.0.0.1 with HTTP Range support.

    `cut_after[path] = n` makes the next full response for `path` stop after n bytes and
    drop the connection (once), as a flaky network would. Requests are logged.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_after: dict[str, int] = {}
        self.ignore_range = False  # behave like a server without Range support
        self.requests: list[tuple[str, str | None]] = []

    @property
    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                range_header = self.headers.get("Range")
                server.requests.append((self.path, range_header))
                if server.ignore_range:
                    range_header = None
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if range_header:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(payload[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        return Handler


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[tuple[str, Server]]:
    state = Server(files)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()

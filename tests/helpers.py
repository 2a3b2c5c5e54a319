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


def write_png16(path: Path, array: np.ndarray) -> Path:
    """A 16-bit PNG of a (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB or (H, W, 4)
    RGBA uint16 array, written by hand: Pillow writes 16-bit gray only."""
    import struct
    import zlib

    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path

"""Download, resume, hash pinning, extraction and VisA conversion, all on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import tarfile

import numpy as np
import pytest
from helpers import make_mvtec, serve, tar_bytes, write_png
from PIL import Image

from cnc.data.check import check_root
from cnc.data.download import DownloadError, HashMismatch, download, extract
from cnc.data.prepare import DataError, fetch
from cnc.data.registry import RemoteDataset
from cnc.data.visa import VisaError, convert, read_split

COUNTS = {"bottle": (3, 2, 2), "grid": (2, 1, 3)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def mvtec_archive(tmp_path):
    src = make_mvtec(tmp_path / "src" / "mvtec_anomaly_detection", COUNTS)
    (src / "readme.txt").write_text("licence text")
    # MVTec's archive holds the class folders at its top level.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for child in sorted(src.iterdir()):
            tar.add(child, arcname=child.name)
    return buffer.getvalue()


def spec_for(data: bytes, name: str = "mvtec", counts=COUNTS) -> RemoteDataset:
    return RemoteDataset(name, "http://unused.invalid/x", sha(data), f"{name}.tar.xz", counts, "")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/archive.tar.xz"


def test_download_verifies_and_resumes_a_cut_transfer(tmp_path, mvtec_archive):
    with serve({"/a.tar.xz": mvtec_archive}) as (url, server):
        server.cut_after["/a.tar.xz"] = len(mvtec_archive) // 3
        dest = download(
            url + "/a.tar.xz", tmp_path / "a.tar.xz", sha(mvtec_archive), progress=False
        )
    assert dest.read_bytes() == mvtec_archive
    assert server.requests[0] == ("/a.tar.xz", None)
    assert server.requests[1] == ("/a.tar.xz", f"bytes={len(mvtec_archive) // 3}-")
    assert not (tmp_path / "a.tar.xz.part").exists()


def test_interrupted_download_resumes_on_the_next_run(tmp_path, mvtec_archive):
    dest = tmp_path / "a.tar.xz"
    with serve({"/a": mvtec_archive}) as (url, server):
        server.cut_after["/a"] = 1000
        with pytest.raises(DownloadError, match="run again to resume"):
            download(url + "/a", dest, sha(mvtec_archive), retries=0, progress=False)
        assert (tmp_path / "a.tar.xz.part").stat().st_size == 1000
        assert not dest.exists()
        download(url + "/a", dest, sha(mvtec_archive), retries=0, progress=False)
    assert server.requests[-1] == ("/a", "bytes=1000-")
    assert dest.read_bytes() == mvtec_archive


def test_complete_part_file_is_verified_without_refetching(tmp_path, mvtec_archive):
    (tmp_path / "a.part").write_bytes(mvtec_archive)
    with serve({"/a": mvtec_archive}) as (url, server):
        download(url + "/a", tmp_path / "a", sha(mvtec_archive), progress=False)
    assert server.requests == [("/a", f"bytes={len(mvtec_archive)}-")]  # answered 416
    assert (tmp_path / "a").read_bytes() == mvtec_archive


def test_server_without_range_support_restarts_from_zero(tmp_path, mvtec_archive):
    (tmp_path / "a.part").write_bytes(b"bytes that are not a prefix of the archive")
    with serve({"/a": mvtec_archive}) as (url, server):
        server.ignore_range = True
        download(url + "/a", tmp_path / "a", sha(mvtec_archive), progress=False)
    assert server.requests[0][1] is not None  # a Range was asked for, and answered with 200
    assert (tmp_path / "a").read_bytes() == mvtec_archive


def test_corrupt_archive_fails_hash_and_leaves_nothing(tmp_path, mvtec_archive):
    corrupt = bytearray(mvtec_archive)
    corrupt[len(corrupt) // 2] ^= 0xFF
    spec = spec_for(mvtec_archive)
    root = tmp_path / "data" / "mvtec"
    with (
        serve({"/m.tar.xz": bytes(corrupt)}) as (url, _),
        pytest.raises(HashMismatch, match="does not match the pinned"),
    ):
        fetch(spec, root, url=url + "/m.tar.xz", progress=False)
    assert not root.exists()
    assert list((tmp_path / "data").rglob("*")) == [tmp_path / "data" / "downloads"]


def test_fetch_mvtec_extracts_checks_counts_and_writes_manifest(tmp_path, mvtec_archive):
    spec = spec_for(mvtec_archive)
    root = tmp_path / "data" / "mvtec"
    with serve({"/m.tar.xz": mvtec_archive}) as (url, _):
        manifest = fetch(spec, root, url=url + "/m.tar.xz", progress=False)
    assert check_root(root).ok
    assert manifest["counts"]["grid"]["test_anomalous"] == 3
    assert (root / "manifest.json").is_file()
    assert "grid/ground_truth/crack/000_mask.png" in manifest["files"]
    assert (tmp_path / "data" / "downloads" / "mvtec.tar.xz").read_bytes() == mvtec_archive
    assert not list((tmp_path / "data").glob(".*"))  # no temporary folders left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(root.stat().st_mode) == 0o777 & ~umask  # not mkdtemp's private 0700

    # A second run uses the folder as it is: no network needed.
    again = fetch(spec, root, url=closed_port_url(), progress=False)
    assert again["files"] == manifest["files"]

    # A changed file is detected through the manifest.
    write_png(root / "bottle" / "train" / "good" / "000.png", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DataError, match="changed since"):
        fetch(spec, root, url=closed_port_url(), progress=False)


def test_fetch_uses_an_archive_placed_by_hand(tmp_path, mvtec_archive):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "mvtec.tar.xz").write_bytes(mvtec_archive)
    fetch(spec_for(mvtec_archive), tmp_path / "mvtec", url=closed_port_url(), progress=False)
    assert check_root(tmp_path / "mvtec").ok


def test_fetch_uses_an_extracted_folder_placed_by_hand(tmp_path):
    root = make_mvtec(tmp_path / "mvtec", COUNTS)
    manifest = fetch(spec_for(b"x"), root, url=closed_port_url(), progress=False)
    assert manifest["counts"]["bottle"]["train"] == 3
    with pytest.raises(DataError, match="published"):
        other = make_mvtec(tmp_path / "other", {"bottle": (3, 2, 2)})
        fetch(spec_for(b"x"), other, url=closed_port_url(), progress=False)


def test_offline_fetch_says_where_to_put_the_archive(tmp_path, mvtec_archive):
    with pytest.raises(DownloadError) as info:
        fetch(spec_for(mvtec_archive), tmp_path / "mvtec", url=closed_port_url(), progress=False)
    message = str(info.value)
    assert "cannot connect" in message
    assert str(tmp_path / "downloads" / "mvtec.tar.xz") in message
    assert not (tmp_path / "mvtec").exists()


def test_count_mismatch_after_download_removes_the_folder(tmp_path, mvtec_archive):
    spec = spec_for(mvtec_archive, counts={"bottle": (9, 9, 9), "grid": (2, 1, 3)})
    with serve({"/m": mvtec_archive}) as (url, _), pytest.raises(DataError, match="published"):
        fetch(spec, tmp_path / "mvtec", url=url + "/m", progress=False)
    assert not (tmp_path / "mvtec").exists()


def test_truncated_archive_extracts_nothing(tmp_path, mvtec_archive):
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "t.tar.xz"
    archive.write_bytes(mvtec_archive[: len(mvtec_archive) // 2])
    with pytest.raises(DownloadError, match="cannot extract"):
        extract(archive, work / "out")
    assert sorted(p.name for p in work.iterdir()) == ["t.tar.xz"]


# ---------------------------------------------------------------------------- VisA


def make_visa_raw(root, crlf: bool = True):
    rows = ["object,split,label,image,mask"]
    rng = np.random.default_rng(0)
    for cls, (n_train, n_good, n_bad) in {"candle": (3, 2, 2), "pcb1": (2, 1, 1)}.items():
        images = root / cls / "Data" / "Images"
        for i in range(n_train + n_good):
            write_png(
                images / "Normal" / f"{i:04d}.JPG", rng.integers(0, 255, (12, 12, 3), np.uint8)
            )
            split = "train" if i < n_train else "test"
            rows.append(f"{cls},{split},normal,{cls}/Data/Images/Normal/{i:04d}.JPG,")
        for i in range(n_bad):
            write_png(
                images / "Anomaly" / f"{i:03d}.JPG", rng.integers(0, 255, (12, 12, 3), np.uint8)
            )
            mask = np.zeros((12, 12), np.uint8)
            mask[2:5, 2:5] = 1  # defect-class indices, not 0/255
            mask[8:10, 8:10] = 2
            write_png(root / cls / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png", mask)
            rows.append(
                f"{cls},test,anomaly,{cls}/Data/Images/Anomaly/{i:03d}.JPG,"
                f"{cls}/Data/Masks/Anomaly/{i:03d}.png"
            )
    (root / "split_csv").mkdir(parents=True)
    newline = "\r\n" if crlf else "\n"
    (root / "split_csv" / "1cls.csv").write_bytes((newline.join(rows) + newline).encode())
    return root


def test_visa_split_reads_crlf_like_lf(tmp_path):
    crlf = read_split(make_visa_raw(tmp_path / "a", crlf=True))
    lf = read_split(make_visa_raw(tmp_path / "b", crlf=False))
    assert crlf == lf
    assert crlf[0]["mask"] == "" and crlf[-1]["mask"].endswith(".png")
    assert all(not v.endswith("\r") for row in crlf for v in row.values())


def test_visa_conversion_layout_and_binary_masks(tmp_path):
    raw = make_visa_raw(tmp_path / "raw")
    convert(raw, tmp_path / "out")
    report = check_root(tmp_path / "out")
    assert report.ok, report.problems
    assert report.classes["candle"].train == 3
    assert report.classes["candle"].test_good == 2
    assert report.classes["candle"].test_anomalous == 2
    mask = np.asarray(
        Image.open(tmp_path / "out" / "candle" / "ground_truth" / "bad" / "000_mask.png")
    )
    assert set(np.unique(mask)) == {0, 255}
    assert (mask == 255).sum() == 9 + 4


def test_visa_bad_split_file(tmp_path):
    raw = make_visa_raw(tmp_path / "raw")
    (raw / "split_csv" / "1cls.csv").write_text("object,split,image\ncandle,train,x.JPG\n")
    with pytest.raises(VisaError, match="header"):
        convert(raw, tmp_path / "out")
    (raw / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\ncandle,train,normal,candle/missing.JPG,\n"
    )
    with pytest.raises(VisaError, match="missing from the archive"):
        convert(raw, tmp_path / "out2")


def test_fetch_visa_over_http(tmp_path):
    raw = make_visa_raw(tmp_path / "VisA")
    data = tar_bytes(raw, mode="w")  # VisA ships a plain tar
    counts = {"candle": (3, 2, 2), "pcb1": (2, 1, 1)}
    spec = RemoteDataset("visa", "", sha(data), "VisA.tar", counts, "", convert="visa")
    root = tmp_path / "data" / "visa"
    with serve({"/VisA.tar": data}) as (url, server):
        server.cut_after["/VisA.tar"] = len(data) // 2
        manifest = fetch(spec, root, url=url + "/VisA.tar", progress=False)
    assert manifest["counts"]["pcb1"] == {
        "train": 2,
        "test_good": 1,
        "test_anomalous": 1,
        "defect_types": ["bad"],
        "pixel_formats": ["8-bit RGB"],
    }
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["downloads", "visa"]

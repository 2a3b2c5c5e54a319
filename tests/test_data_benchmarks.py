"""MVTec AD 2, MPDD, BTAD and Real-IAD: each converter on a replica of its raw layout
(cnc.data.replicas), downloads from 127.0.0.1, placement by hand, and the layouts'
pitfalls that `cnc data check` reports."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from helpers import make_mvtec, serve, square_mask, tar_bytes, write_png
from typer.testing import CliRunner

from cnc.cli import app
from cnc.data import replicas
from cnc.data.check import check_root
from cnc.data.download import DownloadError, extract
from cnc.data.prepare import DataError, fetch, prepare_dataset, replica
from cnc.data.raw import ConvertError
from cnc.data.registry import REMOTE, REPLICAS

runner = CliRunner()


def zip_bytes(src: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def counts_of(manifest: dict) -> dict[str, tuple[int, int, int]]:
    return {
        c: (n["train"], n["test_good"], n["test_anomalous"]) for c, n in manifest["counts"].items()
    }


@pytest.mark.parametrize("name", sorted(REPLICAS))
def test_every_converter_runs_on_a_replica_of_its_raw_layout(name, tmp_path):
    """The replica is converted by the dataset's own converter into a folder that passes
    every check, each class with its normal training and normal and anomalous test images."""
    manifest = replica(name, tmp_path / name)
    assert manifest["dataset"] == name and manifest["replica_of"] == REPLICAS[name]
    assert set(manifest["counts"]) == set(replicas.SOURCES[REPLICAS[name]])
    assert check_root(tmp_path / name).ok
    for train, good, bad in counts_of(manifest).values():
        assert train >= 15 and good >= 8 and bad >= 9
    again = replica(name, tmp_path / name)  # reused, not made again
    assert again["created"] == manifest["created"]


def test_btad_ok_becomes_good_and_masks_of_another_extension_pair(tmp_path):
    raw = tmp_path / "raw"
    replicas.write("btad", raw)
    src = raw / "BTech_Dataset_transformed"
    assert (src / "01" / "test" / "ko" / "0008.bmp").is_file()
    assert (src / "01" / "ground_truth" / "ko" / "0008.png").is_file()  # png mask, bmp image
    manifest = replica("replica_btad", tmp_path / "btad")
    assert counts_of(manifest) == {"01": (16, 8, 16), "03": (16, 8, 16)}
    root = tmp_path / "btad"
    assert sorted(p.name for p in (root / "01" / "test").iterdir()) == ["good", "ko"]
    assert (root / "03" / "ground_truth" / "ko" / "0008.bmp").is_file()  # kept as it is


def test_mvtec_ad2_tests_on_test_public_and_keeps_the_rest_apart(tmp_path):
    manifest = replica("replica_mvtec_ad2", tmp_path / "ad2")
    root = tmp_path / "ad2"
    assert sorted(p.name for p in (root / "can").iterdir()) == [
        "ground_truth", "test", "train", "validation",
    ]  # fmt: skip
    assert len(list((root / "can" / "validation" / "good").iterdir())) == 4  # not read
    assert not list(root.rglob("test_private*"))  # no ground truth: not copied
    assert manifest["not_evaluated"]["can"] == {"test_private": 3, "test_private_mixed": 3}
    assert manifest["test_set"] == "test_public"
    assert counts_of(manifest)["can"] == (16, 8, 16)  # the validation images not counted


def test_realiad_labels_each_view_by_its_own_entry(tmp_path):
    raw = tmp_path / "raw"
    replicas.write("realiad", raw)
    meta = json.loads((raw / "realiad_jsons" / "realiad_jsons" / "pcb.json").read_text())
    invisible = [
        e for e in meta["test"] if "_NG_" in e["image_path"] and e["anomaly_class"] == "OK"
    ]
    assert len(invisible) == 6  # views C4, C5 of the three defective samples
    out = tmp_path / "out"
    out.mkdir()
    from cnc.data import realiad

    info = realiad.convert(raw, out, classes=["pcb"])
    assert [p.name for p in out.iterdir()] == ["pcb"] and info["classes_chosen"] == ["pcb"]
    good = {p.name for p in (out / "pcb" / "test" / "good").iterdir()}
    assert {Path(e["image_path"]).name for e in invisible} <= good
    mask = out / "pcb" / "ground_truth" / "HS"
    names = sorted(p.name for p in mask.iterdir())
    assert names and all(n.endswith("_mask.png") for n in names)
    report = check_root(out)
    assert report.ok and report.classes["pcb"].test_anomalous == 9


def _realiad_raw(tmp_path: Path) -> tuple[Path, Path, dict]:
    raw = tmp_path / "raw"
    replicas.write("realiad", raw)
    path = raw / "realiad_jsons" / "realiad_jsons" / "pcb.json"
    return raw, path, json.loads(path.read_text())


def test_realiad_refuses_what_its_metadata_gets_wrong(tmp_path):
    from cnc.data import realiad

    raw, path, meta = _realiad_raw(tmp_path)
    with pytest.raises(ConvertError, match=r"pcb\.json.*training image .* is QS, not OK"):
        bad = {**meta, "train": meta["train"] + [e for e in meta["test"] if e["mask_path"]][:1]}
        path.write_text(json.dumps(bad))
        realiad.convert(raw, tmp_path / "o1", classes=["pcb"])
    with pytest.raises(ConvertError, match="listed twice"):
        path.write_text(json.dumps({**meta, "test": meta["test"] + meta["train"][:1]}))
        realiad.convert(raw, tmp_path / "o2", classes=["pcb"])
    with pytest.raises(ConvertError, match=r"data.realiad.classes: \['toy'\] not in .*audiojack"):
        realiad.convert(raw, tmp_path / "o3", classes=["toy"])
    with pytest.raises(ConvertError, match=r"data\.realiad\.resolution"):
        realiad.convert(raw, tmp_path / "o4", resolution="300")
    no_mask = [dict(e, mask_path=None) if e["mask_path"] else e for e in meta["test"]]
    path.write_text(json.dumps({**meta, "test": no_mask}))
    with pytest.raises(ConvertError, match=r"is .* but has no mask_path"):
        realiad.convert(raw, tmp_path / "o5", classes=["pcb"])


def test_realiad_is_placed_by_hand_and_converted_from_the_settings(tmp_path):
    raw, _, _ = _realiad_raw(tmp_path)
    data = {"downloads": str(tmp_path / "dl"), "realiad": {"root": str(tmp_path / "realiad")}}
    with pytest.raises(DataError, match=r"realiad4ad.*data\.realiad\.raw"):
        prepare_dataset("realiad", data)
    data["realiad"] |= {"raw": str(raw), "classes": ["audiojack"], "resolution": 256}
    _, manifest = prepare_dataset("realiad", data)
    assert list(manifest["counts"]) == ["audiojack"] and manifest["views"].startswith("per image")
    assert (raw / "realiad_256").is_dir()  # the user's folder is copied from, never moved


def test_mpdd_is_checked_against_its_published_counts(tmp_path):
    raw = tmp_path / "raw"
    replicas.write("mpdd", raw)
    data = {"downloads": str(tmp_path / "dl"), "mpdd": {"root": str(tmp_path / "mpdd")}}
    with pytest.raises(DataError, match=r"stepanje/MPDD.*extracted folder \(MVTec layout\)"):
        prepare_dataset("mpdd", data)
    data["mpdd"]["raw"] = str(raw)
    with pytest.raises(
        DataError,
        match=r"tubes: \(train, test good, test anomalous\) = \(16, 8, 16\), "
        r"published \(122, 32, 69\)",
    ):
        prepare_dataset("mpdd", data)
    assert not (tmp_path / "mpdd").exists()  # nothing half-prepared left
    counts = {c: REMOTE["mpdd"].counts[c] for c in ("bracket_black", "tubes")}
    mine = dataclasses.replace(REMOTE["mpdd"], counts={c: (16, 8, 16) for c in counts})
    manifest = fetch(mine, tmp_path / "mpdd", raw=raw)
    assert counts_of(manifest) == {"bracket_black": (16, 8, 16), "tubes": (16, 8, 16)}


@pytest.mark.parametrize("name", ["btad", "mvtec_ad2"])
def test_public_archives_download_convert_and_verify(name, tmp_path):
    """btad.zip and mvtec_ad_2.tar.gz as published (a replica inside), served on
    127.0.0.1, hash pinned: downloaded, extracted, converted, counted, nothing left over."""
    raw = tmp_path / "raw"
    replicas.write(name, raw)
    data = zip_bytes(raw) if name == "btad" else tar_bytes(raw, mode="w:gz", arcname="mvtec_ad_2")
    archive = REMOTE[name].archive
    spec = dataclasses.replace(REMOTE[name], sha256=sha(data))
    root = tmp_path / "data" / name
    with serve({f"/{archive}": data}) as (url, _):
        manifest = fetch(spec, root, url=f"{url}/{archive}", progress=False)
    assert set(manifest["counts"]) == set(replicas.SOURCES[name])
    assert manifest["converted_from"] == name
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(["downloads", name])
    assert check_root(root).ok


def test_a_zip_member_outside_the_folder_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", "x")
    (tmp_path / "a.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="outside the folder"):
        extract(tmp_path / "a.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out").exists()


def test_data_check_reports_two_masks_for_one_image_and_test_copies_of_training_images(tmp_path):
    root = make_mvtec(tmp_path / "d", {"part": (2, 1, 2)})
    gt = root / "part" / "ground_truth" / "crack"
    first = sorted(gt.iterdir())[0]
    write_png(gt / (first.stem.removesuffix("_mask") + ".PNG"), square_mask())  # a second
    shutil.copyfile(sorted((root / "part" / "train" / "good").iterdir())[0],
                    root / "part" / "test" / "good" / "copy.png")  # fmt: skip
    result = runner.invoke(app, ["data", "check", str(root)])
    assert result.exit_code == 1
    assert "2 masks" in result.output and "keep the one that belongs to it" in result.output
    assert "warning:" in result.output and "the same file as the training image" in result.output


def test_a_mask_with_an_upper_case_extension_is_found(tmp_path):
    root = make_mvtec(tmp_path / "d", {"part": (2, 1, 1)})
    gt = root / "part" / "ground_truth" / "crack"
    for mask in list(gt.iterdir()):
        mask.rename(mask.with_name(mask.stem + ".PNG"))
    report = check_root(root)
    assert report.ok and report.classes["part"].test_anomalous == 1


def test_a_training_job_names_how_to_prepare_each_dataset():
    from cnc.settings import DataSettings
    from cnc.training.preflight import data_command

    assert data_command(DataSettings("btad", "data/btad")) == "cnc data fetch btad --root data/btad"
    assert data_command(DataSettings("realiad", "data/r")) == (
        "cnc data fetch realiad --root data/r --raw <the extracted folder>"
    )
    assert data_command(DataSettings("mpdd", "data/m")) == "cnc data fetch mpdd --root data/m"
    assert data_command(DataSettings("replica_btad", "d")).startswith(
        "cnc data prepare replica_btad"
    )

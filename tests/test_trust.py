"""Numbers you can trust: faults that must never change a result without a word, files
that must never run code when loaded, and the message each fault gives."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_mvtec, square_mask, write_png, write_png16
from PIL import Image
from test_train import SPEC, config
from typer.testing import CliRunner

from cnc.cli import app
from cnc.data.dataset import AnomalyDataset, load_mask
from cnc.data.images import describe, load_image
from cnc.data.layout import class_samples
from cnc.data.manifest import checked
from cnc.data.prepare import fetch, synthetic
from cnc.data.registry import RemoteDataset
from cnc.errors import BadFileError, SettingsError
from cnc.evaluation.evaluate import evaluate_run
from cnc.evaluation.maps import MapsError, read_class_maps, write_class_maps
from cnc.evaluation.replicates import ReplicatesError, load
from cnc.inference.infer import infer_run
from cnc.io import DiskFullError, disk_full_named, remove_stale_temporaries, temporary_suffix
from cnc.params import load_params, validate_params
from cnc.pipeline.jobs import run_job
from cnc.runs import (
    BOOTSTRAP,
    FINAL,
    MAPS_DIR,
    METRICS_JSON,
    PROTOCOL,
    RunBusyError,
    StaleResultError,
    TrainingError,
    checked_metrics,
    load_checkpoint,
    run_lock,
    save_checkpoint,
)
from cnc.settings import BackboneSettings, EvaluateSettings, parse_assignment

runner = CliRunner()
SCORED = EvaluateSettings(bootstrap=100)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    synthetic(SPEC, root)
    return root


@pytest.fixture(scope="module")
def evaluated(data_root, tmp_path_factory):
    """A run trained, inferred and evaluated as the workflow does it."""
    run = tmp_path_factory.mktemp("runs") / "a"
    run_job(config(data_root, epochs=2), run, progress=False)
    evaluate_run(run, SCORED, heatmaps=False)
    return run


@pytest.fixture
def run(evaluated, tmp_path):
    """A copy of the evaluated run (file times kept, as the maps' model stamp needs)."""
    copy = tmp_path / "run"
    shutil.copytree(evaluated, copy)
    return copy


def out(result) -> str:
    return result.output.replace("\n", " ")


# ----------------------------------------------------------------------------- images


def test_16_bit_gray_is_scaled_by_its_depth_not_clipped(tmp_path):
    values = np.full((8, 8), 32768, dtype=np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"  # what Pillow would clip to 255 everywhere
    pixels = load_image(path, 8)
    assert pixels.shape == (8, 8, 3) and np.allclose(pixels, 32768 / 65535, atol=1e-4)
    assert describe(path) == "16-bit gray"


def test_16_bit_rgb_and_rgba_come_at_their_scale(tmp_path):
    channels = np.stack([np.full((4, 4), v, dtype=np.uint16) for v in (65535, 32768, 0)], -1)
    rgb16 = write_png16(tmp_path / "rgb16.png", channels)
    assert np.allclose(load_image(rgb16, 4)[0, 0], (1.0, 128 / 255, 0.0), atol=1e-6)
    assert describe(rgb16) == "16-bit RGB"
    alpha = np.full((4, 4, 1), 65535, dtype=np.uint16)
    rgba16 = write_png16(tmp_path / "rgba16.png", np.concatenate([channels, alpha], -1))
    assert np.allclose(load_image(rgba16, 4), load_image(rgb16, 4))


def test_palette_cmyk_and_alpha_are_converted(tmp_path):
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(tmp_path / "p.png")
    assert np.allclose(load_image(tmp_path / "p.png", 4), (1.0, 0.0, 0.0))
    palette.info["transparency"] = 1  # index 1 fully transparent: black underneath
    palette.save(tmp_path / "pt.png", transparency=1)
    assert np.allclose(load_image(tmp_path / "pt.png", 4), 0.0)
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    assert np.allclose(load_image(tmp_path / "cmyk.tif", 4), (1.0, 0.0, 0.0))
    Image.new("RGBA", (4, 4), (200, 100, 50, 51)).save(tmp_path / "rgba.png")  # 20 % opaque
    assert np.allclose(load_image(tmp_path / "rgba.png", 4) * 255, (40, 20, 10), atol=1)
    Image.new("LA", (4, 4), (200, 255)).save(tmp_path / "la.png")
    assert np.allclose(load_image(tmp_path / "la.png", 4) * 255, 200, atol=0.5)


def test_float_and_32_bit_images_are_refused_by_name(tmp_path):
    Image.fromarray(np.ones((4, 4), dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(BadFileError, match=r"float\.tif: 32-bit float image.*8- or 16-bit"):
        load_image(tmp_path / "float.tif", 4)


def test_masks_of_any_depth_and_colour_mark_every_non_zero_pixel(tmp_path):
    mask16 = np.zeros((8, 8), dtype=np.uint16)
    mask16[:4, :4] = 1
    Image.fromarray(mask16).save(tmp_path / "m16.png")
    assert load_mask(tmp_path / "m16.png", 8).sum() == 16
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[:2, :2, 2] = 1  # blue 1: grey level 0 after Pillow's weighted "L" conversion
    write_png(tmp_path / "blue.png", colour)
    assert load_mask(tmp_path / "blue.png", 8).sum() == 4


def test_a_16_bit_dataset_reads_as_its_images_not_as_white(tmp_path):
    root = make_mvtec(tmp_path / "ds", {"part": (1, 1, 1)})
    image = root / "part" / "train" / "good" / "000.png"
    Image.fromarray(np.full((16, 16), 16384, dtype=np.uint16)).save(image)
    dataset = AnomalyDataset(class_samples(root, "part", "train"), 16, mean=(0,) * 3, std=(1,) * 3)
    assert np.allclose(dataset[0]["image"].numpy(), 16384 / 65535, atol=1e-4)
    result = runner.invoke(app, ["data", "check", str(root), "--json"])
    assert result.exit_code == 0, result.output
    formats = json.loads(result.output)["classes"]["part"]["pixel_formats"]
    assert formats == ["16-bit gray", "8-bit RGB"]
    table = runner.invoke(app, ["data", "check", str(root)])
    assert "16-bit gray" in table.output


# ----------------------------------------------------------------------------- the model


def test_a_damaged_model_is_refused_and_the_maps_are_kept(run):
    maps = (run / MAPS_DIR / PROTOCOL).read_bytes()
    data = bytearray((run / FINAL).read_bytes())
    middle = len(data) // 2
    data[middle : middle + 100] = bytes(100)
    (run / FINAL).write_bytes(bytes(data))
    result = runner.invoke(app, ["infer", str(run), "--no-progress"])
    assert result.exit_code == 1 and "damaged" in out(result), result.output
    assert (run / MAPS_DIR / PROTOCOL).read_bytes() == maps


def test_a_model_whose_tensors_changed_fails_its_digest(run):
    state = torch.load(run / FINAL, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1e-3  # the digest stays the old one
    torch.save(state, run / FINAL)
    with pytest.raises(TrainingError, match="does not match the digest stored with it"):
        load_checkpoint(run / FINAL)


def test_non_finite_maps_never_replace_the_saved_ones(run, monkeypatch):
    maps = (run / MAPS_DIR / PROTOCOL).read_bytes()
    monkeypatch.setattr("cnc.inference.infer.score_batch", lambda r, images, i: np.full(
        (len(images), 64, 64), np.nan, dtype=np.float32))  # fmt: skip
    with pytest.raises(TrainingError, match=r"map values are not finite.*earlier maps are kept"):
        infer_run(run, progress=False)
    assert (run / MAPS_DIR / PROTOCOL).read_bytes() == maps


class Planted:
    """Unpickling this creates a file: what a crafted run folder could do."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_loading_a_run_folder_never_runs_code(run, data_root, tmp_path):
    Planted.marker = tmp_path / "code-ran"
    torch.save({"format": 3, "model": Planted()}, run / FINAL)
    image = sorted((data_root / "wood" / "test" / "good").glob("*.png"))[0]
    result = runner.invoke(app, ["predict", str(run), str(image), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "run as code; refused" in out(result), result.output
    with open(run / MAPS_DIR / "wood.npz", "wb") as fh:  # a crafted maps file
        np.savez(fh, maps=np.array([Planted()], dtype=object))
    with pytest.raises(MapsError, match="not a readable maps file"):
        read_class_maps(run / MAPS_DIR / "wood.npz")
    with open(run / BOOTSTRAP, "wb") as fh:
        np.savez(fh, values=np.array([Planted()], dtype=object))
    with pytest.raises(ReplicatesError, match="not readable bootstrap replicates"):
        load(run / BOOTSTRAP)
    assert not Planted.marker.exists()
    with open(run / FINAL, "wb") as fh:  # and a pickle that torch.load alone would run
        pickle.dump(Planted(), fh, protocol=2)
    with pytest.raises(TrainingError, match=r"damaged|refused"):
        load_checkpoint(run / FINAL)
    assert not Planted.marker.exists()


# ----------------------------------------------------------------------------- locks


HOLDER = """
import sys, time
from pathlib import Path
from cnc.runs import run_lock
lock = run_lock(Path(sys.argv[1]), shared=sys.argv[2] == "shared", purpose="a test")
lock.__enter__()
Path(sys.argv[3]).write_text("held")
time.sleep(300)
"""


def holding(run: Path, mode: str, tmp_path: Path) -> subprocess.Popen:
    flag = tmp_path / f"held-{mode}"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), mode, str(flag)])
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert flag.exists(), "the holder did not start"
    return proc


def test_readers_and_writers_of_a_run_wait_for_no_one_and_name_the_holder(run, tmp_path):
    writer = holding(run, "exclusive", tmp_path)  # e.g. `cnc train --force` retraining it
    try:
        for command in (["evaluate", str(run), "--no-heatmaps"], ["compare", str(run), str(run)]):
            result = runner.invoke(app, command)
            assert result.exit_code == 1, result.output
            assert f"pid {writer.pid} on" in out(result) and "(a test)" in out(result)
    finally:
        writer.kill()
        writer.wait()
    reader = holding(run, "shared", tmp_path)  # e.g. a report reading it
    try:
        with pytest.raises(RunBusyError, match=rf"while pid {reader.pid} .*works on this run"):
            evaluate_run(run, SCORED, heatmaps=False)
        with run_lock(run, shared=True):  # another reader is welcome
            pass
    finally:
        reader.kill()
        reader.wait()


# ----------------------------------------------------------------------------- results


def test_a_result_is_refused_when_what_it_was_computed_from_changed(run, evaluated):
    assert checked_metrics(run)["mtotal"] > 0
    fresh = load(run / BOOTSTRAP)  # an evaluation killed after bootstrap.npz, before metrics
    from cnc.evaluation.replicates import Replicates, save

    save(run / BOOTSTRAP, Replicates(fresh.classes, fresh.values + 1, fresh.images, 0))
    with pytest.raises(StaleResultError, match=r"bootstrap\.npz: does not belong"):
        checked_metrics(run)
    result = runner.invoke(app, ["compare", str(run), str(evaluated)])
    assert result.exit_code == 1 and f"cnc evaluate {run}" in out(result)
    evaluate_run(run, SCORED, heatmaps=False)
    infer_run(run, progress=False)  # maps written again (same content): still current
    assert checked_metrics(run)
    from cnc.settings import InferSettings

    infer_run(run, InferSettings(map_size=32), progress=False)
    with pytest.raises(StaleResultError, match="the maps changed since"):
        checked_metrics(run)
    evaluate_run(run, SCORED, heatmaps=False)
    state = load_checkpoint(run / FINAL)  # another model in its place, maps of the old one
    save_checkpoint(run / FINAL, {**state, "settings": state["settings"].to_dict(), "epoch": 9})
    with pytest.raises(StaleResultError, match=r"the model changed since its maps.*cnc infer"):
        checked_metrics(run)
    (run / METRICS_JSON).unlink()
    with pytest.raises(StaleResultError, match=r"metrics\.json: missing"):
        checked_metrics(run)


def test_maps_changed_after_inference_are_refused_by_the_evaluation(run):
    data = read_class_maps(run / MAPS_DIR / "wood.npz")
    data.maps = data.maps[::-1].copy()
    write_class_maps(run / MAPS_DIR, "wood", data)
    with pytest.raises(MapsError, match=r"wood\.npz: changed since inference wrote it"):
        evaluate_run(run, SCORED, heatmaps=False)


def test_compare_refuses_runs_scored_under_different_protocols(run, tmp_path):
    other = tmp_path / "sigma3"
    shutil.copytree(run, other)
    evaluate_run(other, EvaluateSettings(sigma=3.0, bootstrap=100), heatmaps=False)
    result = runner.invoke(app, ["compare", str(run), str(other)])
    assert result.exit_code == 1
    assert f"smoothing_sigma: {run} 4.0, {other} 3.0" in out(result)
    assert "Scoring: anomaly maps at 64 px, smoothed with a Gaussian of sigma 4.0" in (
        runner.invoke(app, ["compare", str(run), str(run)]).output.replace("\n", " ")
    )


def test_a_run_works_from_any_folder(data_root, tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(data_root, project / "data")
    monkeypatch.chdir(project)
    relative = config(Path("data"), epochs=1)
    run_job(relative, Path("runs/r"), progress=False)
    assert json.loads(Path("runs/r/config.json").read_text())["data"]["root"] == str(
        project / "data"
    )
    monkeypatch.chdir(tmp_path)
    image = project / "data" / "wood" / "test" / "good" / "000.png"
    result = runner.invoke(app, ["predict", str(project / "runs/r"), str(image), "--out", "o"])
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- data


def _fault_mask_size(root: Path) -> Path:
    mask = root / "wood" / "ground_truth" / "crack" / "000_mask.png"
    write_png(mask, square_mask(size=20))
    return mask


def _fault_truncated(root: Path) -> Path:
    image = root / "wood" / "test" / "good" / "000.png"
    write_png(image, np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    image.write_bytes(image.read_bytes()[:200])
    return image


def _fault_empty_class(root: Path) -> Path:
    (root / "empty" / "train" / "good").mkdir(parents=True)
    (root / "empty" / "test" / "good").mkdir(parents=True)
    return root / "empty" / "train" / "good"


def _fault_no_anomalous(root: Path) -> Path:
    shutil.rmtree(root / "wood" / "test" / "crack")
    shutil.rmtree(root / "wood" / "ground_truth")
    return root / "wood" / "test"


def _fault_test_without_train(root: Path) -> Path:
    shutil.rmtree(root / "wood" / "train")
    return root / "wood"


@pytest.mark.parametrize(
    "fault, message",
    [
        (_fault_mask_size, "differs from its image"),
        (_fault_truncated, "unreadable or truncated image"),
        (_fault_empty_class, "empty class, no training images"),
        (_fault_no_anomalous, "no anomalous test images"),
        (_fault_test_without_train, "has test images but no train/good"),
    ],
)
def test_training_checks_the_data_first_and_names_the_file(fault, message, tmp_path):
    root = make_mvtec(tmp_path / "ds", {"wood": (2, 2, 2), "grid": (2, 2, 2)}, size=16)
    named = fault(root)
    args = ["train", str(tmp_path / "run"), "--set", f"data.root={root}", "--set",
            "data.dataset=mine", "--set", "train.epochs=1", "--weights", "random", "--set",
            "backbone.name=cnc-tiny-ViT-B-32", "--set", "backbone.resolution=64"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in out(result) and str(named) in out(result)
    assert "nothing was trained" in out(result) and f"cnc data check {root}" in out(result)
    assert not (tmp_path / "run").exists()


def test_a_mask_of_another_size_is_never_stretched(tmp_path):
    root = make_mvtec(tmp_path / "ds", {"wood": (1, 1, 1)})
    mask = _fault_mask_size(root)
    with pytest.raises(ValueError, match=r"000_mask\.png: mask size 20x20 differs"):
        load_mask(mask, 8, root / "wood" / "test" / "crack" / "000.png")


def test_the_data_check_is_remembered_until_a_file_changes(tmp_path, monkeypatch):
    root = make_mvtec(tmp_path / "ds", {"wood": (2, 1, 1)})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert checked(root).ok
    monkeypatch.setattr("cnc.data.check.describe", lambda path: pytest.fail("decoded again"))
    assert checked(root).ok  # unchanged files: remembered
    image = root / "wood" / "train" / "good" / "000.png"
    image.write_bytes(image.read_bytes()[:60])  # changed (size and time): checked again
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert any(str(image) in p for p in checked(root).problems)


def test_the_data_step_names_a_missing_root_before_downloads(tmp_path):
    spec = RemoteDataset("mvtec", "http://127.0.0.1:9/x.tar", "0" * 64, "x.tar", {}, "")
    with pytest.raises(Exception, match=rf"^{tmp_path / 'mvtecc'}: dataset root not found"):
        fetch(spec, tmp_path / "mvtecc", retries=0, progress=False)


def test_checking_a_missing_root_prints_no_empty_table(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "dataset root not found" in out(result)
    assert "class" not in result.output and "┏" not in result.output


# ----------------------------------------------------------------------------- messages


def test_a_resolution_the_patches_do_not_tile_is_refused_naming_valid_ones():
    with pytest.raises(SettingsError, match=r"resolution=70: not a multiple of .* 16.*64 or 80"):
        BackboneSettings(name="cnc-tiny-ViT-B-16", weights="random", resolution=70)


def test_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    assert parse_assignment("train.lr=1e-4") == (["train", "lr"], 1e-4)
    params = tmp_path / "params.yaml"
    text = Path(__file__).parents[1].joinpath("params.yaml").read_text()
    params.write_text(text.replace("train: {}\n", "train: {lr: 1e-4}\n", 1))
    assert load_params(params)["train"]["lr"] == 1e-4
    snakemake_config = load_params()  # as Snakemake's YAML 1.1 reader leaves it
    snakemake_config["train"] = {"lr": "1e-4"}
    snakemake_config["data"]["folder"]["root"] = "1e3"  # a string where a string is due
    validate_params(snakemake_config)
    assert snakemake_config["train"]["lr"] == 1e-4
    assert snakemake_config["data"]["folder"]["root"] == "1e3"


def test_messages_keep_their_brackets(tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            str(tmp_path / "r"),
            "--set",
            "data.root=x",
            "--set",
            "data.dataset=mvtec",
            "--set",
            "backbone.name=ViT-H-14",
        ],
    )
    assert result.exit_code == 1 and "(--set backbone.taps=[i,j,k])" in out(result)


def test_a_full_disk_inside_torch_save_is_named(tmp_path):
    with pytest.raises(DiskFullError, match="no space left"), disk_full_named(tmp_path / "m.pt"):
        torch.save({"w": torch.zeros(100_000)}, "/dev/full")  # torch's own words for it


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB file system (tmpfs); skipped where this process may not mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_checkpoint_on_a_full_disk_keeps_the_earlier_one(small_disk):
    save_checkpoint(small_disk / "c.pt", {"settings": {}, "w": torch.zeros(100)})
    before = (small_disk / "c.pt").read_bytes()
    with pytest.raises(DiskFullError, match=rf"{small_disk / 'c.pt'}: no space left"):
        save_checkpoint(small_disk / "c.pt", {"settings": {}, "w": torch.zeros(2_000_000)})
    assert (small_disk / "c.pt").read_bytes() == before
    assert [p.name for p in small_disk.iterdir()] == ["c.pt"]


def test_a_truncated_image_is_named(tmp_path):
    path = _fault_truncated(make_mvtec(tmp_path / "ds", {"wood": (1, 1, 1)}))
    with pytest.raises(BadFileError, match=rf"{path}: unreadable or truncated image"):
        load_image(path, 16)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_empty_or_truncated_result_files_are_clear_errors(run, content):
    (run / MAPS_DIR / "wood.npz").write_bytes(content)
    result = runner.invoke(app, ["evaluate", str(run), "--no-heatmaps"])
    assert result.exit_code == 1 and "wood.npz: not a readable maps file" in out(result)
    assert "Aborted" not in result.output and "cnc infer" in out(result)
    (run / BOOTSTRAP).write_bytes(content)
    with pytest.raises(ReplicatesError, match=r"bootstrap\.npz: not readable bootstrap"):
        load(run / BOOTSTRAP)


def test_leftovers_of_killed_steps_are_removed_at_the_next_start(run, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    host = temporary_suffix().split("~")[0].lstrip(".")
    stale = [
        run / f".metrics.json.abcd1234.{host}~{dead.stdout.strip()}.tmp",
        run / "heatmaps" / f".wood.png.abcd1234.{host}~{dead.stdout.strip()}.tmp",
        run / ".metrics.csv.k2j3h4g5.tmp",  # named as earlier versions named them
    ]
    live = run / f".bootstrap.npz.abcd1234.{host}~{os.getpid()}.tmp"
    for path in [*stale, live]:
        path.parent.mkdir(exist_ok=True)
        path.write_text("left")
    evaluate_run(run, SCORED, heatmaps=True)
    assert not any(p.exists() for p in stale) and live.exists()
    assert remove_stale_temporaries(run) == []


def test_a_read_only_run_folder_is_read_without_a_record(run, monkeypatch):
    """Shared results often come read-only: readers hold them all the same, writers say
    why they cannot."""
    import builtins

    def read_only(path, mode="r", *args, **kwargs):
        if mode != "r":
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr("cnc.runs.open", read_only, raising=False)
    result = runner.invoke(app, ["compare", str(run), str(run)])
    assert result.exit_code == 0, result.output
    with pytest.raises(RunBusyError, match="not writable by this user"):
        evaluate_run(run, SCORED, heatmaps=False)

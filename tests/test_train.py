"""Training, the feature cache, resume, determinism, inference and prediction (tiny CPU runs)."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import re
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import write_png
from typer.testing import CliRunner

import cnc.training.loop as training
from cnc.cli import app
from cnc.data.dataset import load_mask, open_split
from cnc.data.prepare import synthetic
from cnc.data.synthetic import SyntheticSpec
from cnc.errors import SettingsError
from cnc.evaluation.evaluate import evaluate_run
from cnc.evaluation.maps import image_scores_from_maps, read_class_maps, read_protocol, smooth
from cnc.inference.infer import infer_run
from cnc.inference.predict import predict
from cnc.io import DiskFullError
from cnc.model import losses
from cnc.model.build import build
from cnc.runs import (
    CALIBRATION,
    CHECKPOINT,
    FINAL,
    MAPS_DIR,
    PROVENANCE,
    TRAIN_LOG,
    TrainingError,
    load_checkpoint,
    save_checkpoint,
)
from cnc.settings import (
    BackboneSettings,
    DataSettings,
    EvaluateSettings,
    InferSettings,
    ModelSettings,
    RunSettings,
    TrainSettings,
)
from cnc.training.features import FeatureCache, Reencode
from cnc.training.loop import run_epoch, train

runner = CliRunner()
SPEC = SyntheticSpec(
    seed=1, image_size=64, classes=("wood", "washer"), train_per_class=8, test_per_class=6
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "synthetic"
    synthetic(SPEC, root)
    return root


def config(data_root, seed: int = 0, **train) -> RunSettings:
    return RunSettings(
        DataSettings("synthetic", str(data_root)),
        BackboneSettings(name="cnc-tiny-ViT-B-16", weights="random", resolution=64),
        ModelSettings(moe_experts=3, moe_top_k=2, theta=1),
        TrainSettings(**{"epochs": 4, "batch_size": 4, "checkpoint_every": 2, **train}),
        seed=seed,
    )


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / FINAL)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "a"
    train(config(data_root), run, progress=False)
    return run


# ----------------------------------------------------------------------------- training


def test_a_run_writes_the_model_log_and_config_and_removes_the_checkpoint(trained, data_root):
    assert (trained / FINAL).is_file()
    assert not (trained / CHECKPOINT).exists()
    assert not list(trained.glob(".feature-cache-*"))
    with open(trained / TRAIN_LOG) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"distill", "c1", "c2", "constraint", "moe", "total", "seconds"} <= set(rows[0])
    saved = json.loads((trained / "config.json").read_text())
    assert RunSettings.from_dict(saved) == config(data_root)
    state = load_checkpoint(trained / FINAL)
    assert state["complete"] and state["epoch"] == 4
    assert "optimizer" not in state  # only a checkpoint carries what resuming needs


def test_same_seed_same_weights_other_seed_other_weights(trained, data_root, tmp_path):
    train(config(data_root), tmp_path / "b", progress=False)
    assert same_weights(weights(trained), weights(tmp_path / "b"))
    train(config(data_root, seed=1), tmp_path / "c", progress=False)
    assert not same_weights(weights(trained), weights(tmp_path / "c"))


def interrupt(monkeypatch, settings: RunSettings, run, at_epoch: int) -> None:
    """Train until epoch index `at_epoch` starts, then stop as Ctrl-C would."""
    real = training.run_epoch

    def interrupted(*args, **kwargs):
        if args[6] == at_epoch:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(settings, run, progress=False)
    monkeypatch.setattr(training, "run_epoch", real)


def test_resume_after_an_interruption_ends_at_the_same_weights(
    trained, data_root, tmp_path, monkeypatch
):
    interrupt(monkeypatch, config(data_root), tmp_path / "r", at_epoch=3)  # after epoch 2's
    assert load_checkpoint(tmp_path / "r" / CHECKPOINT)["epoch"] == 2
    assert not (tmp_path / "r" / FINAL).exists()
    with pytest.raises(FileExistsError, match="pass --resume to continue it or --force"):
        train(config(data_root), tmp_path / "r", progress=False)

    train(config(data_root), tmp_path / "r", resume=True, progress=False)
    assert same_weights(weights(trained), weights(tmp_path / "r"))
    history = load_checkpoint(tmp_path / "r" / FINAL)["history"]
    reference = load_checkpoint(trained / FINAL)["history"]
    timeless = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert timeless == [{k: v for k, v in h.items() if k != "seconds"} for h in reference]


def test_a_finished_run_is_reused_only_with_the_same_settings_and_code(
    trained, data_root, tmp_path
):
    with pytest.raises(FileExistsError, match="the run is trained; pass --force"):
        train(config(data_root), trained, progress=False)
    before = (trained / FINAL).stat().st_mtime_ns
    reused = train(config(data_root), trained, resume=True, progress=False)
    assert (trained / FINAL).stat().st_mtime_ns == before  # reused, not retrained
    assert same_weights(reused.state["model"], weights(trained)) and reused.network is None
    with pytest.raises(FileExistsError, match="other settings, data or code; pass --force"):
        train(config(data_root, lr=5e-4), trained, resume=True, progress=False)
    run = tmp_path / "old-code"
    train(config(data_root, epochs=1), run, progress=False)
    state = load_checkpoint(run / FINAL)
    save_checkpoint(run / FINAL, {**state, "settings": state["settings"].to_dict(), "code": "old"})
    with pytest.raises(FileExistsError, match="other settings, data or code"):
        train(config(data_root, epochs=1), run, resume=True, progress=False)
    train(config(data_root, epochs=1), run, resume=True, force=True, progress=False)
    assert load_checkpoint(run / FINAL)["code"] != "old"


def test_resume_refuses_a_checkpoint_of_other_settings_unless_forced(
    data_root, tmp_path, monkeypatch
):
    run = tmp_path / "x"
    interrupt(monkeypatch, config(data_root, checkpoint_every=1), run, at_epoch=1)
    other = config(data_root, epochs=3, lr=5e-4)
    with pytest.raises(TrainingError, match="other settings or data; pass --force to start over"):
        train(other, run, resume=True, progress=False)
    train(other, run, resume=True, force=True, progress=False)
    assert load_checkpoint(run / FINAL)["settings"].train.lr == 5e-4


def test_resume_may_change_the_number_of_epochs(trained, data_root, tmp_path, monkeypatch):
    run = tmp_path / "short"
    interrupt(monkeypatch, config(data_root, epochs=3), run, at_epoch=2)  # checkpoint: 2
    train(config(data_root, epochs=4), run, resume=True, progress=False)
    assert same_weights(weights(trained), weights(run))


def test_the_distillation_loss_falls(data_root, tmp_path):
    state = train(config(data_root, epochs=8), tmp_path / "long", progress=False).state
    distill = [h["distill"] for h in state["history"]]
    assert distill[-1] < 0.8 * distill[0], distill


def test_a_nan_loss_stops_the_run_naming_epoch_and_term(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "distill_loss", lambda a, b: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="epoch 1: loss term distill is nan"):
        train(config(data_root), tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / FINAL).exists()


def test_no_training_images_is_a_clear_error(tmp_path):
    (tmp_path / "empty" / "cls" / "train" / "good").mkdir(parents=True)
    with pytest.raises(Exception, match="empty"):
        train(config(tmp_path / "empty"), tmp_path / "run", progress=False)


# ----------------------------------------------------------------------------- diagnostics


def test_every_epoch_logs_what_each_loss_term_does(trained):
    log = pd.read_csv(trained / TRAIN_LOG)
    experts = [f"e{t}" for t in (1, 2, 3)]
    assert np.allclose(log[[f"moe_load_{e}" for e in experts]].sum(axis=1), 1.0)
    assert np.allclose(log[[f"moe_importance_{e}" for e in experts]].sum(axis=1), 1.0)
    for tap in (1, 2, 3):
        assert log[f"noise_ratio_tap{tap}"].between(0.05, 0.105).all()  # noise_std 0.1
        assert log[f"text_drift_tap{tap}"].between(-1.0, 1.0).all()
        for name in ("e", "ehat"):
            assert log[f"normal_{name}_tap{tap}"].between(0.0, 1.0).all()
    # The default (prompt_grad eq4): only L_c1 can move the prompts, and L_c1 nothing else.
    assert (log["grad_prompts_distill"] == 0).all() and (log["grad_prompts_c2"] == 0).all()
    assert (log["grad_decoder_c1"] == 0).all() and (log["grad_prompts_moe"] == 0).all()
    assert (log["grad_decoder_distill"] > 0).all()


def test_with_prompt_grad_all_the_distillation_moves_the_prompts(data_root, tmp_path):
    settings = config(data_root, epochs=1)
    settings = settings.with_overrides(["model.prompt_grad=all"])
    train(settings, tmp_path / "all", progress=False)
    assert (pd.read_csv(tmp_path / "all" / TRAIN_LOG)["grad_prompts_distill"] > 0).all()


def test_diagnostics_change_nothing_in_training(data_root):
    from cnc.training.diagnostics import diagnose, reference_text

    settings = config(data_root)
    encoder, model = build(settings)
    taps = encoder.encode_taps(torch.randn(4, 3, 64, 64))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    row = diagnose(model, encoder, taps, 3, settings.seed, reference_text(model, encoder))
    assert torch.equal(torch.get_rng_state(), rng)  # dropout draws were forked
    assert same_weights(before, model.state_dict())
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated
    assert row["text_drift_tap1"] == pytest.approx(1.0)  # no step yet: no drift


def test_runs_without_prompts_or_moe_log_only_what_they_have(data_root, tmp_path):
    settings = config(data_root, epochs=1).with_overrides(
        ["model.constraint=false", "model.moe_experts=0"]
    )
    train(settings, tmp_path / "plain", progress=False)
    columns = set(pd.read_csv(tmp_path / "plain" / TRAIN_LOG).columns)
    assert "grad_decoder_distill" in columns and "noise_ratio_tap1" in columns
    assert not {c for c in columns if c.startswith(("grad_prompts", "moe_load", "text_drift"))}


# ----------------------------------------------------------------------------- feature cache


FLOAT16_ERROR = 2.0**-11  # half an ulp of float16: the largest relative rounding of a value
FLOAT16_LOSS_TOLERANCE = 1e-3  # relative, after one epoch (measured: 3e-4 at most)


def _one_epoch(encoder, model, features, order):
    """An epoch of a copy of `model`, the same dropout and noise draws every time."""
    m = copy.deepcopy(model)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.5, 0.999))
    torch.manual_seed(5)
    terms = run_epoch(m, encoder, features, opt, order, 4, 6, torch.Generator().manual_seed(1))
    return terms, {k: v.clone() for k, v in m.state_dict().items()}


def _cache(encoder, dataset, tmp_path, where, dtype="float32"):
    train = TrainSettings(cache=where, cache_dtype=dtype, batch_size=4)
    return FeatureCache.build(encoder, dataset, "cpu", train, tmp_path, progress=False)


def test_an_epoch_from_the_cache_equals_one_that_re_encodes(data_root, tmp_path):
    cfg = config(data_root)
    encoder, model = build(cfg)
    mean, std = encoder.mean_std
    dataset = open_split(data_root, "train", 64, mean=mean, std=std)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    results = {}
    for where in ("memory", "disk"):
        features = _cache(encoder, dataset, tmp_path, where)
        assert (features.cleanup is not None) == (where == "disk") and features.where == where
        results[where] = _one_epoch(encoder, model, features, order)
        features.close()
    results["off"] = _one_epoch(
        encoder, model, Reencode(encoder, dataset, "cpu", 0, nullcontext), order
    )
    (memory, memory_w), (disk, disk_w), (off, off_w) = results.values()
    assert memory == disk and same_weights(memory_w, disk_w)  # float32: exact
    for key in memory:
        assert off[key] == pytest.approx(memory[key], rel=1e-5, abs=1e-6)
    for key in memory_w:
        assert torch.allclose(off_w[key], memory_w[key], atol=1e-5), key
    assert not list(tmp_path.glob(".feature-cache-*"))


def test_a_float16_cache_is_within_its_stated_tolerance(data_root, tmp_path):
    encoder, model = build(config(data_root))
    mean, std = encoder.mean_std
    dataset = open_split(data_root, "train", 64, mean=mean, std=std)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    full, half = (_cache(encoder, dataset, tmp_path, "memory", d) for d in ("float32", "float16"))
    assert half.patches.dtype == torch.float16 and half.patches.nbytes * 2 == full.patches.nbytes
    exact, rounded = full.patches.float(), half.patches.float()
    assert ((exact - rounded).abs() <= FLOAT16_ERROR * exact.abs() + 2.0**-24).all()
    reference, _ = _one_epoch(encoder, model, full, order)
    got, _ = _one_epoch(encoder, model, half, order)
    for key in reference:
        assert got[key] == pytest.approx(reference[key], rel=FLOAT16_LOSS_TOLERANCE), key


def test_a_disk_cache_checks_the_free_space_first(data_root, tmp_path, monkeypatch):
    import cnc.training.features

    encoder, _ = build(config(data_root))
    dataset = open_split(data_root, "train", 64)
    monkeypatch.setattr(cnc.training.features, "free_bytes", lambda path: 1000)
    short = r"needs .* GiB \(\d+ bytes\) and 0\.00 GiB \(1000 bytes\) are free; set train\.cache"
    with pytest.raises(DiskFullError, match=short):
        _cache(encoder, dataset, tmp_path, "disk")
    assert not list(tmp_path.glob(".feature-cache-*"))  # nothing made before the check
    with pytest.raises(SettingsError, match=r"train\.cache: gpu needs a CUDA device"):
        _cache(encoder, dataset, tmp_path, "gpu")


def test_cache_rows_come_back_in_the_requested_order(data_root, tmp_path):
    cfg = config(data_root)
    encoder, _ = build(cfg)
    mean, std = encoder.mean_std
    dataset = open_split(data_root, "train", 64, mean=mean, std=std)
    for where in ("disk", "memory"):
        cache = _cache(encoder, dataset, tmp_path, where)
        picked = cache.taps(torch.tensor([7, 2, 11]))
        direct = encoder.encode_taps(torch.stack([dataset[i]["image"] for i in (7, 2, 11)]))
        assert torch.allclose(picked.patches, direct.patches, atol=1e-5)
        assert torch.allclose(picked.cls, direct.cls, atol=1e-5)
        cache.close()


# ----------------------------------------------------------------------------- inference


def test_inference_writes_maps_for_every_test_image(trained, data_root):
    infer_run(trained, InferSettings(map_size=32), progress=False)
    protocol = read_protocol(trained / MAPS_DIR)
    assert protocol["map_size"] == 32 and protocol["classes"] == ["washer", "wood"]
    test = open_split(data_root, "test", 64)
    for cls in ("washer", "wood"):
        data = read_class_maps(trained / MAPS_DIR / f"{cls}.npz")
        expected = [s for s in test.samples if s.cls == cls]
        assert data.maps.shape == (len(expected), 32, 32)
        assert data.labels.tolist() == [s.label for s in expected]
        assert data.defects.tolist() == [s.defect for s in expected]  # the test folders
        masks = np.stack([load_mask(s.mask, 32) for s in expected])
        assert np.array_equal(data.masks, masks) and masks[data.labels == 1].any()
    assert not (trained / CALIBRATION).exists()  # made by predict, when first needed
    result = evaluate_run(trained, heatmaps=False)
    assert set(result["classes"]) == {"washer", "wood"}


def test_a_job_infers_with_the_network_it_trained_as_a_reload_would(data_root, tmp_path):
    """One model build per job: the trained network in memory gives the maps of model.pt."""
    done = train(config(data_root, epochs=1), tmp_path / "j", progress=False)
    infer_run(tmp_path / "j", progress=False, network=done.network)
    in_memory = read_class_maps(tmp_path / "j" / MAPS_DIR / "wood.npz").maps
    infer_run(tmp_path / "j", progress=False)  # loads model.pt and builds the encoder again
    assert np.array_equal(in_memory, read_class_maps(tmp_path / "j" / MAPS_DIR / "wood.npz").maps)


def test_inference_of_an_unfinished_run_says_to_resume(data_root, tmp_path, monkeypatch):
    run = tmp_path / "u"
    interrupt(monkeypatch, config(data_root), run, at_epoch=3)
    with pytest.raises(TrainingError, match="unfinished; continue it with --resume"):
        infer_run(run, progress=False)


def test_predict_writes_overlays_and_refuses_to_overwrite(trained, data_root, tmp_path):
    images = sorted((data_root / "wood" / "test").glob("*/*.png"))[:2]
    results = predict(trained, images, tmp_path / "out")
    calibration = json.loads((trained / CALIBRATION).read_text())
    assert calibration["all"]["images"] == 16 and calibration["map_size"] == 64  # the run's own
    assert {c: e["images"] for c, e in calibration["classes"].items()} == {"washer": 8, "wood": 8}
    assert calibration["all"]["pixel_median"] < calibration["all"]["image_score_max"]
    assert all(r.overlay.is_file() and r.score > 0 for r in results)
    with pytest.raises(FileExistsError, match="--overwrite"):
        predict(trained, images[:1], tmp_path / "out")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match=r"bad\.png: unreadable or truncated image"):
        predict(trained, [bad], tmp_path / "out2")
    with pytest.raises(ValueError, match=r"--class carpet: the run was not trained on it"):
        predict(trained, images[:1], tmp_path / "out3", cls="carpet")
    assert not (tmp_path / "out3").exists()


def test_predict_mirrors_folders_scales_by_class_and_writes_scores(trained, data_root, tmp_path):
    """A folder of MVTec-layout images: same file names in different defect folders, each
    image on its class's scale, scores in CSV and JSON, a decision from the training
    scores' quantile."""
    wood, washer = data_root / "wood" / "test", data_root / "washer" / "test"
    results = predict(trained, [wood, washer], tmp_path / "o", quantile=1.0)
    expected = sorted(wood.rglob("*.png")) + sorted(washer.rglob("*.png"))
    assert [r.image for r in results] == [p.absolute() for p in expected]
    names = [p.name for p in expected]
    assert len(set(names)) < len(names)  # "000.png" in several folders: all scored
    first = results[0]
    relative = first.image.relative_to(data_root)
    assert first.overlay == tmp_path / "o" / relative.parent / f"{relative.stem}_anomaly.png"
    assert first.overlay.is_file()
    calibration = json.loads((trained / CALIBRATION).read_text())
    for r in results:
        scale = calibration["classes"][r.cls]
        assert r.scale == r.cls == r.image.parts[-4]
        assert r.relative == pytest.approx(r.score / scale["image_score_max"])
        assert r.threshold == pytest.approx(max(scale["image_scores"]))
        assert r.anomalous == (r.score > r.threshold)
    assert (
        calibration["classes"]["wood"]["image_score_max"] != calibration["all"]["image_score_max"]
    )
    table = list(csv.DictReader((tmp_path / "o" / "scores.csv").open()))
    assert [Path(row["image"]) for row in table] == [r.image for r in results]
    assert [float(row["score"]) for row in table] == [r.score for r in results]
    record = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert record["threshold_quantile"] == 1.0 and len(record["images"]) == len(results)
    assert record["protocol"]["map_size"] == 64
    # Outside the layout, the scale of all classes unless --class says which.
    image = write_png(tmp_path / "new" / "x.png", np.full((40, 40, 3), 90, np.uint8))
    (loose,) = predict(trained, [image], tmp_path / "p")
    assert loose.cls is None and loose.scale == "all classes" and loose.threshold is None
    (named,) = predict(trained, [image], tmp_path / "q", cls="wood")
    assert named.scale == "wood" and named.score == pytest.approx(loose.score)


def test_predict_scores_an_image_as_the_evaluation_did(data_root, tmp_path):
    """The same image gets the same score from `cnc predict` and from the evaluation, under
    the sigma the evaluation used; a changed sigma refreshes the calibration."""
    run = tmp_path / "p"
    train(config(data_root, epochs=1), run, progress=False)
    infer_run(run, progress=False)
    evaluate_run(run, EvaluateSettings(sigma=2.0), heatmaps=False)
    data = read_class_maps(run / MAPS_DIR / "wood.npz")
    index = int(np.flatnonzero(data.labels == 1)[0])
    evaluated = image_scores_from_maps(smooth(data.maps, 2.0))[index]
    (got,) = predict(run, [Path(str(data.paths[index]))], tmp_path / "o")
    assert got.score == pytest.approx(float(evaluated), rel=2e-3)  # maps are saved in float16
    assert json.loads((run / CALIBRATION).read_text())["smoothing_sigma"] == 2.0
    evaluate_run(run, EvaluateSettings(sigma=0.0), heatmaps=False)
    predict(run, [Path(str(data.paths[index]))], tmp_path / "o2")
    assert json.loads((run / CALIBRATION).read_text())["smoothing_sigma"] == 0.0


# ----------------------------------------------------------------------------- command line


def test_cli_train_infer_evaluate_predict(data_root, tmp_path):
    run = tmp_path / "cli"
    sets = [f"data.root={data_root}", "data.dataset=synthetic", "backbone.weights=random"]
    sets += ["backbone.name=cnc-tiny-ViT-B-32", "backbone.resolution=64", "train.epochs=2"]
    args = [a for s in sets for a in ("--set", s)]
    result = runner.invoke(app, ["train", str(run), *args, "-s", "model.mlf=false", "--no-maps"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["mlf"] is False and saved["train"]["epochs"] == 2
    assert saved["model"]["gamma"] == ModelSettings().gamma  # not given: the default
    assert not (run / MAPS_DIR).exists() and not (run / "cost.json").exists()
    result = runner.invoke(app, ["infer", str(run), "--set", "infer.map_size=32", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert read_protocol(run / MAPS_DIR)["map_size"] == 32
    assert runner.invoke(app, ["evaluate", str(run), "--no-heatmaps"]).exit_code == 0
    assert (run / "metrics.json").is_file()
    image = write_png(tmp_path / "new.png", np.full((40, 40, 3), 90, np.uint8))
    result = runner.invoke(app, ["predict", str(run), str(image), "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "new_anomaly.png").is_file()
    again = runner.invoke(app, ["train", str(run), *args, "--no-progress"])
    assert again.exit_code == 1 and "--force" in again.output


def test_cli_settings_are_a_run_config_file_or_json(data_root, tmp_path):
    settings = config(data_root, epochs=1).to_json()
    result = runner.invoke(app, ["train", str(tmp_path / "s"), "--settings", settings])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved == json.loads(settings)
    assert (tmp_path / "s" / MAPS_DIR / "protocol.json").is_file()  # maps by default
    cost = json.loads((tmp_path / "s" / "cost.json").read_text())
    trainable = sum(p.numel() for p in load_checkpoint(tmp_path / "s" / FINAL)["model"].values())
    assert cost["params_trainable_m"] == pytest.approx(trainable / 1e6)
    assert cost["params_total_m"] > cost["params_trainable_m"]  # with the frozen encoder
    assert 0 < cost["gflops_encoder"] < cost["gflops_inference"]  # inference runs the encoder
    assert cost["gflops_train_step"] > 0 and cost["inference_images_per_s"] > 0
    assert cost["device"].startswith("CPU") and cost["precision"] == "fp32"
    record = json.loads((tmp_path / "s" / PROVENANCE).read_text())
    assert record["machine"]["device"] == cost["device"] and record["wall_s"] > 0
    assert re.fullmatch("[0-9a-f]{40}", record["code"]["commit"])  # the tests run in a checkout
    assert isinstance(record["code"]["dirty"], bool)
    assert record["packages"]["torch"] == torch.__version__  # the build, e.g. +cu130
    assert {"python", "cnc-bench", "open_clip_torch", "numpy"} <= set(record["packages"])
    files = json.loads((data_root / "manifest.json").read_text())["files"]
    canonical = json.dumps(files, sort_keys=True).encode()
    assert record["dataset"]["content_sha256"] == hashlib.sha256(canonical).hexdigest()
    fingerprint = load_checkpoint(tmp_path / "s" / FINAL)["encoder_fingerprint"]
    assert record["weights"] == {
        "backbone": "cnc-tiny-ViT-B-16",
        "weights": "random",
        "file_sha256": None,
        "tensor_fingerprint": fingerprint,
    }
    metrics = evaluate_run(tmp_path / "s", EvaluateSettings(bootstrap=0), heatmaps=False)
    assert metrics["provenance"]["train"] == record  # carried into metrics.json
    assert metrics["provenance"]["evaluate"]["code"] == record["code"]
    # A run's config.json is a settings file: another run from it, one setting changed.
    args = ["--settings", str(tmp_path / "s" / "config.json"), "--set", "model.gamma=0.5"]
    result = runner.invoke(app, ["train", str(tmp_path / "t"), *args, "--no-maps"])
    assert result.exit_code == 0, result.output
    other = json.loads((tmp_path / "t" / "config.json").read_text())
    assert other["model"]["gamma"] == 0.5 and {**other, "model": saved["model"]} == saved


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-s", "model.moe_experts=2", "-s", "model.moe_top_k=3"], "K must satisfy 1 <= K <= T"),
        (["-s", "backbone.name=ViT-Z"], "depth unknown, so no tap scheme"),
        (["-s", "backbone.name=ViT-Z", "-s", "backbone.taps=[1,2,3]"], "unknown; choose one of"),
        (["-s", "backbone.taps=[a, b]"], "backbone.taps: ['a', 'b'] is not valid"),
        (["-s", "train.cache=ram"], "train.cache: 'ram' is not one of"),
        (["-s", "model.gama=1"], "model.gama: unknown key"),
        (["-s", "gamma"], "expected section.key=value"),
        (["--settings", "{not json"], "--settings: not valid JSON"),
        (["--run", "x", "--settings", "{}"], "give one of them"),
    ],
)
def test_cli_bad_settings_are_clear_errors(data_root, tmp_path, args, message):
    base = ["-s", f"data.root={data_root}", "-s", "data.dataset=synthetic"]
    base += ["-s", "backbone.weights=random", "-s", "backbone.name=cnc-tiny-ViT-B-32"]
    result = runner.invoke(
        app, ["train", str(tmp_path / "r"), *base, "-s", "train.epochs=1", *args]
    )
    assert result.exit_code == 1, result.output
    assert message in " ".join(result.output.split())
    if "choose one of" not in message:  # an unknown backbone is found by open_clip, later
        assert not (tmp_path / "r").exists()  # nothing written before the settings are valid


def test_cli_needs_epochs_for_unknown_datasets(data_root, tmp_path):
    args = ["-s", f"data.root={data_root}", "-s", "data.dataset=other"]
    result = runner.invoke(app, ["train", str(tmp_path / "r"), *args])
    assert result.exit_code == 1 and "train.epochs: required for dataset 'other'" in result.output


def test_cli_trains_a_run_of_the_grid_by_name(tmp_path, monkeypatch):
    """`--run` resolves the run's settings from params (the DVC form) with one function."""
    from cnc.params import load_params
    from cnc.pipeline import grid

    params = load_params()
    name = "mvtec-vitb32-r128-mlf-cnc-moeT5K2-s0"
    expected = grid.run_settings(params, grid.grid_points(params)[name])
    assert grid.job_settings(run=name) == expected
    assert grid.job_settings(run=name, overrides=["model.gamma=0.3"]).model.gamma == 0.3
    result = runner.invoke(app, ["train", str(tmp_path / "r"), "--run", "mvtec-nothing"])
    assert result.exit_code == 1 and "not a run of the grid" in result.output


# ----------------------------------------------------------------------------- precision

BF16_LOSS_TOLERANCE = 0.05  # relative, every loss term over 2 epochs (measured: 0.023 at most)


def test_a_bf16_run_stays_close_to_fp32(data_root, tmp_path):
    """Autocast in bfloat16 (the GPU default), against float32 (the CPU default)."""
    histories, maps = {}, {}
    for arithmetic in ("fp32", "bf16"):
        run = tmp_path / arithmetic
        done = train(config(data_root, epochs=2, precision=arithmetic), run, progress=False)
        infer_run(run, progress=False, network=done.network)
        histories[arithmetic] = done.state["history"]
        maps[arithmetic] = read_class_maps(run / MAPS_DIR / "wood.npz").maps.ravel()
        assert load_checkpoint(run / FINAL)["precision"] == arithmetic
    for full, half in zip(histories["fp32"], histories["bf16"], strict=True):
        for key in ("distill", "c1", "c2", "moe", "total"):
            assert half[key] == pytest.approx(full[key], rel=BF16_LOSS_TOLERANCE, abs=1e-6), key
    assert np.corrcoef(maps["fp32"], maps["bf16"])[0, 1] >= 0.99


def test_auto_precision_is_fp32_on_a_cpu_and_half_on_a_gpu(monkeypatch):
    from cnc.model import precision

    assert precision.resolve("auto", "cpu") == "fp32"  # the exactness tests hold on CPUs
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert precision.resolve("auto", "cuda:0") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # a V100
    assert precision.resolve("auto", "cuda:1") == "fp16"
    assert precision.resolve("tf32", "cuda:0") == "tf32"


def test_an_fp16_run_resumes_to_the_same_weights_with_its_loss_scaler(
    data_root, tmp_path, monkeypatch
):
    settings = config(data_root, precision="fp16")
    train(settings, tmp_path / "whole", progress=False)
    interrupt(monkeypatch, settings, tmp_path / "cut", at_epoch=3)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT)["scaler"]["scale"] < 2.0**16
    train(settings, tmp_path / "cut", resume=True, progress=False)
    assert same_weights(weights(tmp_path / "whole"), weights(tmp_path / "cut"))


def test_a_job_checks_data_weights_and_disk_before_writing_anything(
    data_root, tmp_path, monkeypatch
):
    """Cheap checks first: a missing dataset names the command that makes it, missing
    weights fail before the data loads, a small disk before training; the run folder is
    never created."""
    run = tmp_path / "runs" / "x"
    mvtec = ["--set", "data.dataset=mvtec", "--set", f"data.root={tmp_path / 'mvtec'}"]
    result = runner.invoke(app, ["train", str(run), *mvtec, "--no-progress"])
    assert result.exit_code == 1
    assert f"prepare it with: cnc data fetch mvtec --root {tmp_path / 'mvtec'}" in result.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    ours = [
        "--set",
        f"data.root={data_root}",
        "--set",
        "data.dataset=synthetic",
        "-s",
        "train.epochs=1",
    ]
    result = runner.invoke(app, ["train", str(run), *ours, "--no-progress"])
    assert result.exit_code == 1 and "--weights PATH" in result.output
    result = runner.invoke(app, ["train", str(run), *ours, "--weights", str(tmp_path / "w.pt")])
    assert result.exit_code == 1 and "w.pt: no such checkpoint file" in result.output
    monkeypatch.setattr("cnc.training.preflight.free_bytes", lambda path: 10 * 2**20)
    tiny = ["--set", "backbone.name=cnc-tiny-ViT-B-32", "--set", "backbone.resolution=64"]
    result = runner.invoke(app, ["train", str(run), *ours, *tiny, "--weights", "random"])
    assert result.exit_code == 1 and "GiB are free there" in result.output
    assert not (tmp_path / "runs").exists()

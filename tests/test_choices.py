"""Table S1's variants: each changes exactly the setting it names (its run's settings
differ from the main run's in that key alone) and that setting does what it says in the
network (a structure, output or gradient check on the tiny stand-in of the smoke scale)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
import yaml

from cnc.code import ROOT
from cnc.model import fnp
from cnc.model.backbone import FrozenCLIP, Taps
from cnc.model.build import build
from cnc.model.network import CNCNetwork
from cnc.pipeline import experiments, grid
from cnc.settings import RunSettings, resolve_taps
from cnc.training.loop import make_optimizer

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
CELLS = experiments.cells(PARAMS)["tableS1"]
MAIN = CELLS[0].points[0]
VARIANTS = {
    json.dumps(cell.points[0].overrides, sort_keys=True): cell.points[0] for cell in CELLS[1:]
}


def flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    fa, fb = flat(a), flat(b)
    return {k: fb.get(k) for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


@pytest.fixture(scope="module")
def main_settings() -> RunSettings:
    return grid.run_settings(PARAMS, MAIN)


def networks(settings: RunSettings) -> tuple[FrozenCLIP, CNCNetwork, Taps]:
    """The run's encoder and network (weights fixed by its seed) and a batch's taps."""
    encoder, model = build(settings)
    size = settings.backbone.resolution
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return encoder, model.eval(), encoder.encode_taps(images)


# ----------------------------------------------------------------------------- the checks


def taps_check(main: RunSettings, variant: RunSettings) -> None:
    encoder, _, taps = networks(variant)
    assert encoder.taps == resolve_taps(variant.backbone.name, variant.backbone.taps)
    assert encoder.taps != networks(main)[0].taps and taps.patches.shape[1] == 3


def global_feature_check(main: RunSettings, variant: RunSettings) -> None:
    routed = {}
    for name, settings in (("main", main), ("variant", variant)):
        encoder, model, taps = networks(settings)
        out = model(encoder, taps)
        routed[name] = out.scores.shape[1]
        if name == "variant":  # e_i: the mean patch through ln_post and the projection
            assert torch.allclose(out.e, encoder.to_joint(taps.patches.mean(2)), atol=1e-6)
            patches = taps.patches.shape[2]
    assert routed == {"main": patches + 1, "variant": patches}  # the class token not routed


def sigma_check(main: RunSettings, variant: RunSettings) -> None:
    assert variant == main  # the same training; only the scoring differs
    scored = grid.evaluate_settings(PARAMS, VARIANTS['{"evaluate.sigma": 0}'])
    assert scored.sigma == 0 and grid.evaluate_settings(PARAMS, MAIN).sigma == 4.0
    assert grid.scoring(PARAMS, VARIANTS['{"evaluate.sigma": 0}'])["smoothing_sigma"] == 0


def betas_check(main: RunSettings, variant: RunSettings) -> None:
    """Adam's first moment after one step is (1 - beta1) g."""
    for settings, beta1 in ((main, 0.5), (variant, 0.9)):
        weight = torch.nn.Linear(1, 1, bias=False)
        optimizer = make_optimizer(weight, settings.train)
        weight(torch.ones(1, 1)).sum().backward()
        optimizer.step()
        moment = optimizer.state[weight.weight]["exp_avg"]
        assert torch.allclose(moment, (1 - beta1) * torch.ones(1, 1))


def noise_check(main: RunSettings, variant: RunSettings) -> None:
    """The perturbation of the decoder's input, relative to each token's SD."""
    ratios = {}
    for settings in (main, variant):
        encoder, model, taps = networks(settings)
        seen = {}
        model.fusion.register_forward_pre_hook(lambda m, a, seen=seen: seen.setdefault("x", a[0]))
        model.train()
        model(encoder, taps, generator=torch.Generator().manual_seed(1))
        tokens = torch.cat([taps.cls.unsqueeze(2), taps.patches], dim=2)
        noise = seen["x"] - tokens
        ratios[settings.model.noise_std] = float((noise / tokens.std(-1, keepdim=True)).std())
    for std, ratio in ratios.items():
        assert ratio == pytest.approx(std, rel=0.05)


def decoder_order_check(main: RunSettings, variant: RunSettings) -> None:
    _, first, taps = networks(main)
    _, second, _ = networks(variant)
    assert first.state_dict().keys() == second.state_dict().keys()  # the same network
    x = torch.randn(2, taps.patches.shape[2] + 1, taps.patches.shape[-1])
    assert torch.allclose(second.decoder(x), first.decoder(x).flip(1))


def renormalise_check(main: RunSettings, variant: RunSettings) -> None:
    _, first, taps = networks(main)
    _, second, _ = networks(variant)
    z = torch.randn(2, 10, taps.patches.shape[-1])
    plain, scores = first.moe(z)
    renormalised, _ = second.moe(z)
    top = scores.topk(main.model.moe_top_k, dim=-1).values.sum(-1, keepdim=True)
    assert torch.allclose(renormalised, plain / top, atol=1e-6)


def expert_width_check(main: RunSettings, variant: RunSettings) -> None:
    widths = [networks(s)[1].moe.experts[0][0].out_features for s in (main, variant)]
    assert widths[1] == 4 * widths[0]


def prompt_grad_check(main: RunSettings, variant: RunSettings) -> None:
    """L_distill moves the prompts only when every term trains them."""
    norms = []
    for settings in (main, variant):
        encoder, model, taps = networks(settings)
        out = model(encoder, taps)
        grads = torch.autograd.grad(
            out.terms["distill"], list(model.prompts.parameters()), allow_unused=True
        )
        norms.append(sum(float(g.norm()) for g in grads if g is not None))
    assert norms[0] == 0 and norms[1] > 0


def fnp_check(main: RunSettings, variant: RunSettings) -> None:
    """Eq. 5's lambda: one per map (main) or per patch; eq. 8's shared or f^'s own."""
    outs = []
    for settings in (main, variant):
        encoder, model, taps = networks(settings)
        outs.append((model(encoder, taps), taps, settings.model))
    (main_out, taps, _), (out, _, config) = outs
    if config.fnp_norm == "patch":
        lam = fnp.scaled_coefficient(taps.patches, "patch")
        step = (out.f_star - taps.patches) / lam
        assert step.std(-1).max() < 1e-3  # the same Psi on every channel of a patch
        assert not torch.allclose(out.f_star, main_out.f_star)
    else:  # fnp_hat_norm own: eq. 5 untouched, eq. 8 changed
        assert torch.allclose(out.f_star, main_out.f_star)
        assert not torch.allclose(out.f_hat_star, main_out.f_hat_star)


def map_size_check(main: RunSettings, variant: RunSettings) -> None:
    encoder, model, taps = networks(variant)
    maps = model.anomaly_maps(encoder, taps, variant.infer.map_size)
    assert maps.shape[-2:] == (256, 256) and main.infer.map_size == main.backbone.resolution


CHECKS: dict[str, Callable[[RunSettings, RunSettings], None]] = {
    "backbone.taps": taps_check,
    "model.global_feature": global_feature_check,
    "evaluate.sigma": sigma_check,
    "train.betas": betas_check,
    "model.noise_std": noise_check,
    "model.decoder_order": decoder_order_check,
    "model.moe_renormalise": renormalise_check,
    "model.expert_hidden_ratio": expert_width_check,
    "model.prompt_grad": prompt_grad_check,
    "model.fnp_norm": fnp_check,
    "model.fnp_hat_norm": fnp_check,
    "infer.map_size": map_size_check,
}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_a_variant_changes_only_the_setting_it_names(variant, main_settings):
    ((key, value),) = json.loads(variant).items()
    settings = grid.run_settings(PARAMS, VARIANTS[variant])
    difference = changed(main_settings.to_dict(), settings.to_dict())
    if key.startswith("evaluate."):
        assert difference == {}
    elif key == "backbone.taps":  # stored resolved to block numbers
        assert difference == {key: list(resolve_taps(settings.backbone.name, value))}
    else:
        assert difference == {key: value}
    CHECKS[key](main_settings, settings)


def test_every_variant_of_params_yaml_has_its_check():
    keys = {next(iter(json.loads(v))) for v in VARIANTS}
    assert keys <= CHECKS.keys() and len(VARIANTS) == len(CELLS) - 1 >= 12

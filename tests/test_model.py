"""The model, equation by equation against hand-computed cases, and the four backbones."""

from __future__ import annotations

import math

import huggingface_hub
import numpy as np
import open_clip
import pytest
import torch
from torch import nn

from cnc.evaluation.maps import image_scores_from_maps, smooth
from cnc.model import backbone as clip_backbone
from cnc.model import fnp, losses, moe
from cnc.model.backbone import FrozenCLIP
from cnc.model.build import build
from cnc.model.decoder import Decoder, perturb
from cnc.model.network import CNCNetwork
from cnc.model.prompts import LearnablePrompts, abnormal_prompt, normal_prompt
from cnc.settings import (
    DEPTHS,
    PAPER_BACKBONES,
    TAP_SCHEMES,
    BackboneError,
    BackboneSettings,
    DataSettings,
    ModelSettings,
    RunSettings,
    fit_resolution,
    resolve_taps,
    tiny_name,
)


def unit(*values: float) -> torch.Tensor:
    t = torch.tensor(values, dtype=torch.float64)
    return t / t.norm()


# ----------------------------------------------------------------------------- eq. 1, 4, 10


def test_eq1_log_probability_is_a_softmax_over_the_two_prompts():
    image = torch.stack([unit(1, 0), unit(0, 1), unit(1, 1)])[None]  # (1, 3, 2)
    text = torch.stack([torch.stack([unit(1, 0), unit(0, 1)])] * 3)  # (3, 2, 2)
    got = losses.clip_log_probability(image, text, tau=0.5)
    # layer 0: logits (2, 0); layer 1: (0, 2); layer 2: (sqrt2, sqrt2)
    expected_normal = [2 - math.log(math.exp(2) + 1), -math.log(math.exp(2) + 1), math.log(0.5)]
    assert torch.allclose(got[0, :, 0], torch.tensor(expected_normal, dtype=torch.float64))
    assert torch.allclose(got.exp().sum(-1), torch.ones(1, 3, dtype=torch.float64))


def test_eq4_and_eq10_sum_minus_log_normal_probability_over_layers_mean_over_batch():
    text = torch.stack([torch.stack([unit(1, 0), unit(0, 1)])] * 3)
    e = torch.stack(
        [torch.stack([unit(1, 0)] * 3), torch.stack([unit(0, 1)] * 3)]
    )  # image 1 normal-like, image 2 abnormal-like
    tau = 1.0
    p_normal_1 = math.e / (math.e + 1)  # logits (1, 0)
    p_normal_2 = 1 / (1 + math.e)  # logits (0, 1)
    expected = (-3 * math.log(p_normal_1) - 3 * math.log(p_normal_2)) / 2
    assert losses.loss_c1(e, text, tau).item() == pytest.approx(expected)
    assert losses.loss_c2(e, text, tau).item() == pytest.approx(expected)


# ----------------------------------------------------------------------------- eq. 2-3


def test_eq2_eq3_prompt_templates():
    assert normal_prompt(3) == "X X X object"
    assert abnormal_prompt(2) == "X X damaged object"


@pytest.fixture(scope="module")
def tiny_encoder():
    torch.manual_seed(0)
    return FrozenCLIP(tiny_name("ViT-B-32"), "random", 64, (2, 4, 6))


def test_prompts_splice_the_learnable_tokens_after_the_start_token(tiny_encoder):
    prompts = LearnablePrompts(tiny_encoder, n_tokens=12)
    emb = prompts.embeddings(tiny_encoder)  # (3, 2, context, W)
    assert emb.shape[:3] == (3, 2, tiny_encoder.clip.context_length)
    assert torch.equal(emb[:, :, 1:13], prompts.context)
    fixed = tiny_encoder.clip.token_embedding(prompts.tokens)
    assert torch.equal(emb[1, 0, 0], fixed[0, 0])  # start token
    assert torch.equal(emb[2, 1, 13:], fixed[1, 13:])  # "damaged object" <eot> ...
    assert prompts.tokens[1].argmax() == prompts.tokens[0].argmax() + 1  # one word longer


def test_prompt_features_are_unit_vectors_one_pair_per_layer(tiny_encoder):
    prompts = LearnablePrompts(tiny_encoder, n_tokens=12)
    g = prompts(tiny_encoder)
    assert g.shape == (3, 2, tiny_encoder.clip.text_projection.shape[1])
    assert torch.allclose(g.norm(dim=-1), torch.ones(3, 2))
    before = g.detach().clone()
    with torch.no_grad():
        prompts.context[1, 0] += 1.0  # only layer 2's normal prompt
    after = prompts(tiny_encoder).detach()
    changed = ~torch.isclose(after, before).all(dim=-1)
    assert changed.tolist() == [[False, False], [True, False], [False, False]]


def test_truncated_text_encoding_equals_the_full_context(tiny_encoder):
    prompts = LearnablePrompts(tiny_encoder, n_tokens=4)
    emb = prompts.embeddings(tiny_encoder)[0]  # (2, context, W)
    clip = tiny_encoder.clip
    full = clip.transformer(emb + clip.positional_embedding, attn_mask=clip.attn_mask)
    eot = prompts.tokens.argmax(dim=-1)
    reference = clip.ln_final(full[torch.arange(2), eot]) @ clip.text_projection
    reference = torch.nn.functional.normalize(reference, dim=-1)
    for kind in (0, 1):
        got = tiny_encoder.encode_prompt_embeddings(emb[kind : kind + 1], int(eot[kind]))
        assert torch.allclose(got[0], reference[kind], atol=1e-5)


# ----------------------------------------------------------------------------- eq. 5-8


def test_eq7_cross_modal_activation_is_a_dot_product_per_layer():
    patches = torch.tensor([[[[1.0, 0.0], [0.6, 0.8]]] * 3])  # (1, 3, 2, 2)
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    got = fnp.cross_modal_activation(patches, text)
    assert torch.allclose(got[0], torch.tensor([[1.0, 0.6], [0.0, 0.8], [0.6, 1.0]]))


def test_eq6_control_coefficient():
    alpha = torch.tensor([0.3, 5.0, -5.0], dtype=torch.float64)
    beta = torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)
    got = fnp.control_coefficient(alpha, beta)
    assert got[0] == pytest.approx(0.5)
    assert got[1] == pytest.approx((1 + math.tanh(5)) / 2)
    assert got[2] == pytest.approx((1 - math.tanh(5)) / 2)


def test_eq5_eq8_promotion_adds_lambda_psi_to_every_channel():
    # Two patches of one layer: norms 5 and 0 -> the whole map's norm is 5.
    features = torch.tensor([[3.0, 4.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    psi = torch.tensor([0.5, 1.0]).view(1, 1, 2)
    whole_map = fnp.scaled_coefficient(features, "map")
    assert whole_map.shape == (1, 1, 1, 1) and whole_map.item() == pytest.approx(0.2)
    got = fnp.normality_promotion(features, psi, whole_map)
    assert torch.allclose(got, torch.tensor([[3.1, 4.1], [0.2, 0.2]]).view(1, 1, 2, 2))
    features = torch.tensor([[3.0, 4.0], [0.0, 6.0]]).view(1, 1, 2, 2)  # map norm sqrt(61)
    assert fnp.scaled_coefficient(features, "map").item() == pytest.approx(61**-0.5)
    per_patch = fnp.scaled_coefficient(features, "patch")
    assert torch.allclose(per_patch.flatten(), torch.tensor([0.2, 1 / 6]))


# ----------------------------------------------------------------------------- eq. 9, 11, 16


def test_eq9_distill_flattens_each_layer_before_the_cosine():
    f = torch.zeros(1, 3, 2, 2)
    f[0, :, 0, 0], f[0, :, 1, 1] = 1.0, 1.0
    f_hat = f.clone()
    f_hat[0, 0, 1, 1] = 2.0  # layer 1: flattened (1,0,0,1) vs (1,0,0,2)
    f_hat[0, 1] = -f[0, 1]  # layer 2: opposite, 1 - cos = 2
    expected = (1 - 3 / math.sqrt(10)) + 2.0 + 0.0
    assert losses.distill_loss(f, f_hat).item() == pytest.approx(expected, rel=1e-6)
    assert losses.distill_loss(f, f).item() == pytest.approx(0.0, abs=1e-6)


def test_eq11_constraint_switches_on_at_epoch_theta():
    c1, c2 = torch.tensor(2.0), torch.tensor(10.0)
    assert losses.constraint_loss(c1, c2, epoch=4, theta=5, gamma=0.1) == 2.0
    assert losses.constraint_loss(c1, c2, epoch=5, theta=5, gamma=0.1) == pytest.approx(3.0)


def test_eq16_total_is_the_plain_sum():
    t = losses.total_loss(torch.tensor(1.5), torch.tensor(0.25), torch.tensor(0.125))
    assert t.item() == 1.875


# ----------------------------------------------------------------------------- eq. 12-15


def test_eq12_fusion_concatenates_the_three_taps_channelwise():
    fusion = moe.MultiLayerFusion(2, n_layers=3, dropout=0.0)
    with torch.no_grad():
        fusion.proj.weight.copy_(torch.tensor([[1.0, 0, 10, 0, 100, 0], [0, 0, 0, 0, 0, 1]]))
        fusion.proj.bias.zero_()
    tokens = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 7.0]]).view(1, 3, 1, 2)
    assert fusion(tokens).flatten().tolist() == [321.0, 7.0]
    off = moe.MultiLayerFusion(2, n_layers=1, dropout=0.0)
    assert off.proj.in_features == 2
    with torch.no_grad():
        off.proj.weight.copy_(torch.eye(2))
        off.proj.bias.zero_()
    assert off(tokens).flatten().tolist() == [3.0, 7.0]  # the deepest tap only


def test_eq13_router_gives_a_distribution_over_experts():
    router = nn.Linear(4, 3)
    h = moe.route(router, torch.randn(2, 5, 4))
    assert h.shape == (2, 5, 3)
    assert torch.allclose(h.sum(-1), torch.ones(2, 5))


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z):
        return self.factor * z


def test_eq14_weighted_sum_of_the_top_k_experts():
    experts = nn.ModuleList(Scale(f) for f in (1.0, 10.0, 100.0))
    scores = torch.tensor([[0.2, 0.5, 0.3]])
    z = torch.tensor([[1.0]])
    got = moe.combine_experts(scores, experts, z, k=2)
    assert got.item() == pytest.approx(0.5 * 10 + 0.3 * 100)  # weights not renormalised
    assert moe.combine_experts(scores, experts, z, k=3).item() == pytest.approx(35.2)


def test_eq15_importance_loss_is_the_squared_coefficient_of_variation():
    balanced = torch.full((4, 2), 0.5)
    assert moe.importance_loss(balanced).item() == pytest.approx(0.0)
    skewed = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # importance (2, 0): SD 1, mean 1
    assert moe.importance_loss(skewed).item() == pytest.approx(1.0)
    assert moe.importance_loss(torch.ones(3, 1)).item() == 0.0


# ----------------------------------------------------------------------------- eq. 17, score


def test_eq17_anomaly_map_sums_the_upsampled_per_patch_distances():
    f = torch.zeros(1, 3, 4, 2)
    f[..., 0] = 1.0
    f_hat = f.clone()
    f_hat[0, 0, 3] = torch.tensor([0.0, 1.0])  # layer 1, patch (1, 1): distance 1
    f_hat[0, 2, 3] = torch.tensor([-1.0, 0.0])  # layer 3, patch (1, 1): distance 2
    same_size = losses.anomaly_map(f, f_hat, (2, 2), 2)
    assert torch.allclose(same_size[0], torch.tensor([[0.0, 0.0], [0.0, 3.0]]))
    big = losses.anomaly_map(f, f_hat, (2, 2), 8)
    assert big.shape == (1, 8, 8)
    assert big[0, -1, -1].item() == pytest.approx(3.0)
    assert big[0, 0, 0].item() == pytest.approx(0.0)


def test_image_score_is_the_maximum_of_the_smoothed_map():
    maps = np.zeros((2, 32, 32), np.float32)
    maps[1, 10, 10] = 1.0
    smoothed = smooth(maps, 4.0)
    assert smoothed[1].sum() == pytest.approx(1.0, rel=1e-4)  # mass preserved
    assert 0 < image_scores_from_maps(smoothed)[1] < 0.02  # a single hot pixel is spread
    assert image_scores_from_maps(smoothed)[0] == 0.0
    assert np.array_equal(smooth(maps, 0), maps)


# ----------------------------------------------------------------------------- decoder, noise


def test_decoder_returns_three_levels_deepest_first_block_reconstructs_last_tap():
    decoder = Decoder(8, 3, head_width=4).eval()
    x = torch.randn(2, 5, 8)
    out = decoder(x)
    assert out.shape == (2, 3, 5, 8)
    first = decoder.blocks[0](x)
    assert torch.allclose(out[:, 2], first)
    assert torch.allclose(out[:, 0], decoder.blocks[2](decoder.blocks[1](first)))


def test_noise_is_scaled_by_each_tokens_std():
    x = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 4.0]])
    g = torch.Generator().manual_seed(0)
    noisy = perturb(x, 0.1, g)
    assert torch.equal(noisy[0], x[0])  # a constant token has std 0
    assert not torch.equal(noisy[1], x[1])
    assert torch.equal(perturb(x, 0.0, g), x)


# ----------------------------------------------------------------------------- switches, configs


def test_k_larger_than_t_is_a_config_error():
    with pytest.raises(ValueError, match="K must satisfy 1 <= K <= T"):
        ModelSettings(moe_experts=2, moe_top_k=3)
    with pytest.raises(ValueError, match=r"model\.moe_experts: -1 is less than the minimum of 0"):
        ModelSettings(moe_experts=-1)
    ModelSettings(moe_experts=0, moe_top_k=9)  # no MoE: K is unused


@pytest.mark.parametrize(
    ("mlf", "constraint", "experts"),
    [(True, True, 5), (False, True, 5), (True, False, 0), (False, False, 1)],
)
def test_switches_change_the_modules_and_the_terms(tiny_encoder, mlf, constraint, experts):
    config = ModelSettings(mlf=mlf, constraint=constraint, moe_experts=experts, moe_top_k=1)
    model = CNCNetwork(tiny_encoder, config)
    assert model.fusion.proj.in_features == (3 if mlf else 1) * tiny_encoder.width
    assert (model.prompts is not None) == constraint
    assert (model.moe is not None) == bool(experts)
    taps = tiny_encoder.encode_taps(torch.randn(2, 3, 64, 64))
    terms = model(tiny_encoder, taps).terms
    assert ("c1" in terms) == constraint
    if not experts:
        assert terms["moe"].item() == 0.0
    expected = terms["distill"] + terms["constraint"] + terms["moe"]
    assert torch.allclose(terms["total"], expected)


def test_unknown_backbone_and_bad_taps_are_clear_errors():
    with pytest.raises(BackboneError, match="unknown; choose one of"):
        FrozenCLIP("ViT-Q-99", "random", 224, (1, 2, 3))
    with pytest.raises(BackboneError, match=r"three increasing block numbers in 1\.\.6"):
        FrozenCLIP(tiny_name("ViT-B-16"), "random", 64, (2, 4, 9))
    with pytest.raises(BackboneError, match="no such checkpoint file"):
        FrozenCLIP(tiny_name("ViT-B-16"), "/nonexistent/w.pt", 64, (2, 4, 6))


def test_missing_openai_weights_offline_fail_at_once_and_say_what_to_do(tmp_path, monkeypatch):
    """Not cached and no hub: an error before open_clip is asked (no retries), naming
    --weights PATH and HF_HUB_OFFLINE."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("tried to load"))
    with pytest.raises(BackboneError) as info:
        FrozenCLIP("ViT-B-32", "openai", 224, (4, 8, 12))
    message = str(info.value)
    assert message.startswith("the OpenAI weights of ViT-B-32 are not in open_clip's cache")
    assert "cnc train RUN --weights PATH" in message and "HF_HUB_OFFLINE=1" in message


def test_openai_weights_in_the_cache_are_loaded_as_a_file_without_the_hub(tmp_path, monkeypatch):
    repo = tmp_path / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    cached = repo / "snapshots" / "abc123" / "open_clip_model.safetensors"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(clip_backbone, "hub_reachable", lambda *a: pytest.fail("asked the hub"))
    assert clip_backbone.resolve_weights("ViT-B-32", "openai") == str(cached)
    assert clip_backbone.resolve_weights("ViT-B-32", "random") is None
    with pytest.raises(BackboneError, match=r"no such checkpoint file.*--weights PATH"):
        clip_backbone.resolve_weights("ViT-B-32", str(tmp_path / "missing.pt"))


# ----------------------------------------------------------------------------- backbones


@pytest.mark.parametrize("backbone", PAPER_BACKBONES)
@pytest.mark.parametrize("resolution", [128, 224, 256, 512])
def test_paper_backbones_tap_shapes_at_every_resolution(backbone, resolution):
    """The real architectures, built on the meta device: shapes without weights or compute,
    at the paper's resolutions fitted to the patch size (ViT-L/14: 126, 252, 518)."""
    taps = resolve_taps(backbone, None)
    patch = 32 if backbone == "ViT-B-32" else 14 if backbone.startswith("ViT-L") else 16
    resolution = fit_resolution(backbone, resolution)
    assert resolution % patch == 0
    encoder = FrozenCLIP(backbone, "random", resolution, taps, device="meta")
    width = 1024 if backbone.startswith("ViT-L") else 768
    side = resolution // patch
    assert encoder.grid == (side, side)
    assert encoder.width == width
    assert encoder.mean_std[0] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    taps = encoder.encode_taps(torch.empty(2, 3, resolution, resolution, device="meta"))
    assert taps.patches.shape == (2, 3, side * side, width)
    assert taps.cls.shape == (2, 3, width)
    depth = len(encoder.clip.visual.transformer.resblocks)
    assert depth == DEPTHS[backbone] and encoder.taps[-1] == depth  # the last tap: last block
    assert encoder.clip.visual.transformer.resblocks[0].mlp.gelu.__class__.__name__ == ("QuickGELU")


def test_real_architecture_full_model_forward_on_cpu():
    """ViT-B-32 (the cheapest paper backbone) with random weights, a real forward pass."""
    backbone = BackboneSettings(name="ViT-B-32", weights="random", resolution=128)
    encoder, model = build(RunSettings(DataSettings("mvtec", "unused"), backbone))
    taps = encoder.encode_taps(torch.randn(1, 3, 128, 128))
    out = model(encoder, taps, epoch=6)
    assert out.f_star.shape == (1, 3, 16, 768)
    assert set(out.terms) == {"moe", "c1", "c2", "constraint", "distill", "total"}
    model.eval()
    assert model.anomaly_maps(encoder, taps, 256).shape == (1, 256, 256)


def test_checkpoint_file_weights_interpolate_the_position_embedding(tmp_path):
    torch.manual_seed(0)
    small = FrozenCLIP(tiny_name("ViT-B-16"), "random", 64, (2, 4, 6))
    path = tmp_path / "weights.pt"
    torch.save(small.clip.state_dict(), path)
    big = FrozenCLIP(tiny_name("ViT-B-16"), str(path), 128, (2, 4, 6))
    assert big.grid == (8, 8)
    pos_small = small.clip.visual.positional_embedding
    pos_big = big.clip.visual.positional_embedding
    assert pos_big.shape == (65, pos_small.shape[1])
    assert torch.equal(pos_big[0], pos_small[0])  # the class token's position is kept
    assert torch.equal(big.clip.visual.conv1.weight, small.clip.visual.conv1.weight)
    assert not torch.equal(pos_big[1:5], pos_small[1:5])  # the grid was resampled


# ----------------------------------------------------------------------------- gradients


def test_frozen_encoders_get_no_gradient_trainables_do(tiny_encoder):
    torch.manual_seed(0)
    model = CNCNetwork(tiny_encoder, ModelSettings(moe_experts=2, moe_top_k=2))
    taps = tiny_encoder.encode_taps(torch.randn(4, 3, 64, 64))
    out = model(tiny_encoder, taps, epoch=10, generator=torch.Generator().manual_seed(0))
    out.terms["total"].backward()
    assert all(p.grad is None for p in tiny_encoder.parameters())
    assert not any(p.requires_grad for p in tiny_encoder.parameters())
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert names == {"prompts", "fusion", "moe", "decoder"}
    assert not any("clip" in k for k in model.state_dict())  # the encoder is never saved


def _prompt_gradients(encoder, prompt_grad: str) -> dict[str, float]:
    """The gradient norm each loss term sends into the prompts, on one batch."""
    torch.manual_seed(0)
    model = CNCNetwork(encoder, ModelSettings(moe_experts=2, moe_top_k=2, prompt_grad=prompt_grad))
    taps = encoder.encode_taps(torch.randn(4, 3, 64, 64))
    out = model(encoder, taps, epoch=10, generator=torch.Generator().manual_seed(0))
    prompts = list(model.prompts.parameters())
    norms = {}
    for term in ("c1", "c2", "distill"):
        grads = torch.autograd.grad(out.terms[term], prompts, retain_graph=True, allow_unused=True)
        norms[term] = sum(0.0 if g is None else g.norm().item() for g in grads)
    return norms


def test_by_default_only_eq4_trains_the_prompts(tiny_encoder):
    """The paper: the text features "trained by (4)" are the anchors of eqs. 5-10."""
    eq4 = _prompt_gradients(tiny_encoder, "eq4")
    assert eq4["c1"] > 0 and eq4["c2"] == 0.0 and eq4["distill"] == 0.0
    every = _prompt_gradients(tiny_encoder, "all")  # the other reading: all terms move them
    assert every["c2"] > 0 and every["distill"] > 0
    assert every["c1"] == pytest.approx(eq4["c1"])  # L_c1 itself is the same


@pytest.mark.parametrize("norm", ["map", "patch"])
@pytest.mark.parametrize("hat", ["shared", "own"])
def test_fnp_norm_and_fnp_hat_norm_decide_lambda_in_eqs_5_and_8(tiny_encoder, norm, hat):
    """Two settings, one thing each: the norm's granularity (both equations) and whether
    eq. 8 reuses eq. 5's lambda or takes f^'s own."""
    torch.manual_seed(0)
    config = ModelSettings(moe_experts=0, fnp_norm=norm, fnp_hat_norm=hat)
    model = CNCNetwork(tiny_encoder, config).eval()
    taps = tiny_encoder.encode_taps(torch.randn(2, 3, 64, 64))
    out = model(tiny_encoder, taps)
    tokens = torch.cat([taps.cls.unsqueeze(2), taps.patches], dim=2)
    f, f_hat = taps.patches, model.decoder(model.fusion(tokens))[:, :, 1:]
    text = model.prompts(tiny_encoder)

    def psi(features):  # eqs. 6-7 on the joint-space patches
        joint = tiny_encoder.to_joint(features)
        alpha = fnp.cross_modal_activation(joint, text[:, 0])
        return fnp.control_coefficient(alpha, fnp.cross_modal_activation(joint, text[:, 1]))

    lam = fnp.scaled_coefficient(f, norm)
    lam_hat = lam if hat == "shared" else fnp.scaled_coefficient(f_hat, norm)
    assert lam.shape[2] == (1 if norm == "map" else f.shape[2])
    assert torch.allclose(out.f_star, f + lam * psi(f).unsqueeze(-1), atol=1e-6)
    assert torch.allclose(out.f_hat_star, f_hat + lam_hat * psi(f_hat).unsqueeze(-1), atol=1e-6)


def test_tap_schemes_mean_the_same_at_every_depth():
    thirds = {b: resolve_taps(b, None) for b in PAPER_BACKBONES}
    assert thirds == {  # the blocks this benchmark has always tapped
        "ViT-B-32": (4, 8, 12),
        "ViT-B-16": (4, 8, 12),
        "ViT-L-14": (8, 16, 24),
        "ViT-L-14-336": (8, 16, 24),
    }
    assert resolve_taps("ViT-L-14-336", "quarters") == (6, 12, 18)
    assert resolve_taps("ViT-L-14-336", "quarters_last") == (6, 12, 24)
    assert resolve_taps("ViT-B-16", "quarters") == (3, 6, 9)
    assert resolve_taps(tiny_name("ViT-L-14"), "quarters") == (2, 3, 5)  # 1.5 and 4.5 round up
    assert resolve_taps(tiny_name("ViT-L-14"), "thirds") == (2, 4, 6)
    assert resolve_taps("ViT-B-16", [1, 5, 9]) == (1, 5, 9)
    with pytest.raises(BackboneError, match="depth unknown"):
        resolve_taps("RN50", None)
    from cnc.schema import schema

    taps = schema()["$defs"]["backbone"]["properties"]["taps"]["oneOf"]
    assert next(s for s in taps if "enum" in s)["enum"] == list(TAP_SCHEMES)


def test_flops_are_counted_as_two_per_multiply_add_without_compute():
    """ViT-B/16 at 224 px by hand: 12 blocks of 12 L C^2 + 2 L^2 C multiply-adds (L = 197
    tokens, C = 768) and the patch embedding, two FLOPs each: 35.1 GFLOPs per image."""
    from cnc.training.cost import flops_per_image

    settings = RunSettings(DataSettings("mvtec", "unused"), BackboneSettings(name="ViT-B-16"))
    tokens, width = 197, 768
    block = 12 * tokens * width**2 + 2 * tokens**2 * width
    by_hand = 2 * (12 * block + 196 * (3 * 16 * 16) * width) / 1e9
    flops = flops_per_image(settings)
    assert flops["gflops_encoder"] == pytest.approx(by_hand, rel=0.01)
    assert flops["gflops_inference"] > flops["gflops_encoder"] and flops["gflops_train_step"] > 0

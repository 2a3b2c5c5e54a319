"""The trainable network of CNC: prompts, fusion, mixture of experts and decoder around
a frozen CLIP encoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnc.model import fnp, losses, moe
from cnc.model.backbone import FrozenCLIP, Taps
from cnc.model.decoder import Decoder, perturb
from cnc.model.moe import GatedMoE, MultiLayerFusion
from cnc.model.precision import full_precision
from cnc.model.prompts import LearnablePrompts
from cnc.settings import ModelSettings


@dataclass
class Outputs:
    """What one forward pass produces (loss terms are 0-dim tensors); the rest is what
    the training diagnostics look at (None where a switch turns it off)."""

    f_star: torch.Tensor
    f_hat_star: torch.Tensor
    terms: dict[str, torch.Tensor]
    scores: torch.Tensor | None = None  # the MoE router's H (B, N, T)
    text: torch.Tensor | None = None  # g_n^i, g_a^i (3, 2, D)
    e: torch.Tensor | None = None  # encoded global features in the joint space (B, 3, D)
    e_hat: torch.Tensor | None = None  # decoded global features (B, 3, D)


class CNCNetwork(nn.Module):
    """The trainable part. The frozen encoder is passed to each call, never held."""

    def __init__(self, encoder: FrozenCLIP, config: ModelSettings) -> None:
        super().__init__()
        width = encoder.width
        self.config = config
        self.prompts = (
            LearnablePrompts(encoder, config.prompt_tokens) if config.constraint else None
        )
        self.fusion = MultiLayerFusion(width, 3 if config.mlf else 1, config.mlf_dropout)
        self.moe = (
            GatedMoE(
                width,
                config.moe_experts,
                config.moe_top_k,
                config.expert_hidden_ratio,
                config.moe_renormalise,
            )
            if config.moe_experts
            else None
        )
        self.decoder = Decoder(width, 3, config.decoder_head_width, config.decoder_order)

    def forward(
        self,
        encoder: FrozenCLIP,
        taps: Taps,
        epoch: int = 0,
        generator: torch.Generator | None = None,
    ) -> Outputs:
        c = self.config
        tokens = taps.patches  # (B, 3, L, C), behind the class token when it is decoded
        if c.global_feature == "class_token":
            tokens = torch.cat([taps.cls.unsqueeze(2), tokens], dim=2)  # (B, 3, 1 + L, C)
        x = perturb(tokens, c.noise_std, generator) if self.training else tokens
        x = self.fusion(x)
        zero = x.new_zeros(())
        moe_loss, scores = zero, None
        if self.moe is not None:
            x, scores = self.moe(x)
            moe_loss = moe.importance_loss(scores)
        # Fusion, MoE and decoder may run in 16 bits (autocast, train.precision); from here
        # on everything is float32: the text products' logits are scaled by 1/tau = 1000.
        decoded = self.decoder(x)
        with full_precision(x):
            return self._constrain(encoder, taps, decoded.float(), moe_loss, scores, epoch)

    def _constrain(
        self,
        encoder: FrozenCLIP,
        taps: Taps,
        decoded: torch.Tensor,
        moe_loss: torch.Tensor,
        scores: torch.Tensor | None,
        epoch: int,
    ) -> Outputs:
        """Eqs. 4-11 and 16 on the decoded taps (B, 3, [1 +] L, C)."""
        c = self.config
        skip = 1 if c.global_feature == "class_token" else 0
        f, f_hat = taps.patches.float(), decoded[:, :, skip:]
        zero = decoded.new_zeros(())
        terms = {"moe": moe_loss.float()}
        text = e = e_hat = None
        if self.prompts is not None:
            text = self.prompts(encoder)  # (3, 2, D): g_n^i, g_a^i
            # The paper applies the text features "trained by (4)" as anchors: with
            # prompt_grad "eq4" only L_c1 moves the prompts; eqs. 5-10 use them fixed.
            anchors = text.detach() if c.prompt_grad == "eq4" else text
            scale = fnp.scaled_coefficient(f, c.fnp_norm)
            # eq. 8 reuses eq. 5's lambda ("shared"), or takes f^'s own norms ("own")
            own = c.fnp_hat_norm == "own"
            scale_hat = fnp.scaled_coefficient(f_hat, c.fnp_norm) if own else scale
            f_star = self._promote(encoder, f, anchors, scale)
            f_hat_star = self._promote(encoder, f_hat, anchors, scale_hat)
            e, e_hat = self._global(encoder, taps, decoded)
            terms["c1"] = losses.loss_c1(e, text, c.tau)
            terms["c2"] = losses.loss_c2(e_hat, anchors, c.tau)
            terms["constraint"] = losses.constraint_loss(
                terms["c1"], terms["c2"], epoch, c.theta, c.gamma
            )
        else:  # constraint off: plain distillation, no prompts, no promotion, no constraint
            f_star, f_hat_star = f, f_hat
            terms["constraint"] = zero
        terms["distill"] = losses.distill_loss(f_star, f_hat_star)
        terms["total"] = losses.total_loss(terms["distill"], terms["constraint"], terms["moe"])
        return Outputs(f_star, f_hat_star, terms, scores, text, e, e_hat)

    def _global(
        self, encoder: FrozenCLIP, taps: Taps, decoded: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """e_i and e^_i (B, 3, D) in the joint space (model.global_feature)."""
        if self.config.global_feature == "class_token":
            return encoder.to_joint(taps.cls.float()), encoder.to_joint(decoded[:, :, 0])
        return encoder.to_joint(taps.patches.float().mean(2)), encoder.to_joint(decoded.mean(2))

    @staticmethod
    def _promote(
        encoder: FrozenCLIP, features: torch.Tensor, text: torch.Tensor, scale: torch.Tensor
    ) -> torch.Tensor:
        joint = encoder.to_joint(features)
        alpha = fnp.cross_modal_activation(joint, text[:, 0])
        beta = fnp.cross_modal_activation(joint, text[:, 1])
        return fnp.normality_promotion(features, fnp.control_coefficient(alpha, beta), scale)

    @torch.no_grad()
    def anomaly_maps(self, encoder: FrozenCLIP, taps: Taps, size: int) -> torch.Tensor:
        """Eq. (17) at `size` x `size` (call in eval mode: no noise, no dropout)."""
        out = self(encoder, taps)
        with full_precision(out.f_star):
            return losses.anomaly_map(out.f_star, out.f_hat_star, encoder.grid, size)

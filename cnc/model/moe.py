"""Multi-layer fusion (eq. 12) and the gated mixture of experts (eqs. 13-15)."""

from __future__ import annotations

import torch
from torch import nn


class MultiLayerFusion(nn.Module):
    """Eq. (12): f~ = Phi([f_1, f_2, f_3]), a linear layer with dropout, 3C -> C.

    With fusion off the decoder sees only the deepest tap, through the same kind of
    layer (C -> C), so the ablation changes what is fused and nothing else.
    """

    def __init__(self, width: int, n_layers: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_layers = n_layers
        self.proj = nn.Linear(width * n_layers, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, 3, N, C) -> (B, N, C)."""
        chosen = tokens[:, -self.n_layers :]
        stacked = chosen.permute(0, 2, 1, 3).flatten(2)  # (B, N, n_layers * C)
        return self.proj(self.dropout(stacked))


def route(router: nn.Linear, z: torch.Tensor) -> torch.Tensor:
    """Eq. (13): H = G(z), expert-correlation scores (softmax over the T experts)."""
    return router(z).softmax(dim=-1)


def combine_experts(
    scores: torch.Tensor,
    experts: nn.ModuleList,
    z: torch.Tensor,
    k: int,
    renormalise: bool = False,
) -> torch.Tensor:
    """Eq. (14): z* = sum over the top-K experts of H_k * E_k(z), the weights as the router
    gives them or (`renormalise`) divided by their sum over the K.

    Every expert runs on every token and the unselected ones get weight zero: the same
    result as dispatching, and faster for a handful of experts.
    """
    top_scores, top_index = scores.topk(k, dim=-1)
    if renormalise:
        top_scores = top_scores / top_scores.sum(dim=-1, keepdim=True)
    weights = torch.zeros_like(scores).scatter(-1, top_index, top_scores)
    outputs = torch.stack([expert(z) for expert in experts], dim=-2)  # (..., T, C)
    return (weights.unsqueeze(-1) * outputs).sum(dim=-2)


def importance_loss(scores: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Eq. (15): squared coefficient of variation of the experts' importance.

    Importance_t = sum over all R tokens of G_t(z_r); the loss is SD(Imp)^2 / (mean(Imp)^2
    + eps), population SD over the T experts (0 for a single expert, not NaN).
    """
    importance = scores.reshape(-1, scores.shape[-1]).sum(dim=0)
    return importance.var(unbiased=False) / (importance.mean() ** 2 + eps)


class GatedMoE(nn.Module):
    """Router G: C -> T, T MLP experts C -> hidden -> C, top-K combination."""

    def __init__(
        self,
        width: int,
        n_experts: int,
        top_k: int,
        hidden_ratio: float = 1.0,
        renormalise: bool = False,
    ) -> None:
        super().__init__()  # 1 <= K <= T is checked once, in cnc.settings.ModelSettings
        hidden = max(1, round(width * hidden_ratio))
        self.top_k, self.renormalise = top_k, renormalise
        self.router = nn.Linear(width, n_experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
            for _ in range(n_experts)
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: (B, N, C) -> (z*, the router's scores H (B, N, T))."""
        scores = route(self.router, z)
        z_star = combine_experts(scores, self.experts, z, self.top_k, self.renormalise)
        return z_star, scores

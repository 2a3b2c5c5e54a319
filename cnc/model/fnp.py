"""Feature-level normality promotion (eqs. 5-8)."""

from __future__ import annotations

import torch


def cross_modal_activation(joint_patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Eq. (7): alpha_i = f_i (x) g^i, the product of each patch with one text feature.

    joint_patches: (B, 3, L, D) unit vectors in the joint space; text: (3, D) -> (B, 3, L).
    """
    return torch.einsum("bild,id->bil", joint_patches, text)


def control_coefficient(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Eq. (6): Psi(alpha, beta) = (1 + tanh(alpha - beta)) / 2."""
    return 0.5 * (1.0 + torch.tanh(alpha - beta))


def normality_promotion(features: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
    """Eqs. (5) and (8): f* = f (+) lambda Psi, lambda = 1 / ||z_l|| per patch embedding.

    features: (B, 3, L, C); psi: (B, 3, L). Psi is added to every channel of its patch.
    """
    scale = 1.0 / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return features + scale * psi.unsqueeze(-1)

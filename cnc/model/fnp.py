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


def scaled_coefficient(features: torch.Tensor, norm: str) -> torch.Tensor:
    """Eq. (5)'s lambda = 1 / ||f_i||, broadcastable to `features` (B, 3, L, C).

    "map": one L2 norm over the layer's whole feature map of an image (the paper's
    f_i in R^{H x W x C}) -> (B, 3, 1, 1); "patch": each patch embedding's own norm
    -> (B, 3, L, 1).
    """
    if norm == "map":
        return 1.0 / features.flatten(2).norm(dim=-1).clamp_min(1e-12)[..., None, None]
    return 1.0 / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def normality_promotion(
    features: torch.Tensor, psi: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Eqs. (5) and (8): f* = f (+) lambda Psi, Psi added to every channel of its patch.

    features: (B, 3, L, C); psi: (B, 3, L); scale: lambda from `scaled_coefficient`.
    """
    return features + scale * psi.unsqueeze(-1)

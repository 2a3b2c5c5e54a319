"""The losses (eqs. 1, 4, 9, 10, 11, 16) and the anomaly map (eq. 17)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_log_probability(image: torch.Tensor, text: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (1): log p(y|x) = log softmax_y(F(x) . G(p_y) / tau).

    image: (B, 3, D) unit vectors, one per tapped layer; text: (3, J, D) -> (B, 3, J).
    """
    logits = torch.einsum("bid,ijd->bij", image, text) / tau
    return logits.log_softmax(dim=-1)


def normal_alignment(global_features: torch.Tensor, text: torch.Tensor, tau: float):
    """-log p(normal | e_i) summed over the three layers, averaged over the batch."""
    return -clip_log_probability(global_features, text, tau)[..., 0].sum(dim=1).mean()


def loss_c1(e: torch.Tensor, text: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (4): L_c^1, encoded global features e_i against (g_n^i, g_a^i)."""
    return normal_alignment(e, text, tau)


def loss_c2(e_hat: torch.Tensor, text: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (10): L_c^2, decoded global features e^_i against (g_n^i, g_a^i)."""
    return normal_alignment(e_hat, text, tau)


def distill_loss(f_star: torch.Tensor, f_hat_star: torch.Tensor) -> torch.Tensor:
    """Eq. (9): sum over layers of 1 - cos(Flat(f*_i), Flat(f^*_i)), averaged over the batch.

    f_star, f_hat_star: (B, 3, L, C); each layer of each image is flattened to one vector.
    """
    cos = F.cosine_similarity(f_star.flatten(2), f_hat_star.flatten(2), dim=-1)  # (B, 3)
    return (1.0 - cos).sum(dim=1).mean()


def constraint_loss(
    l_c1: torch.Tensor, l_c2: torch.Tensor, epoch: int, theta: int, gamma: float
) -> torch.Tensor:
    """Eq. (11): L_c^1 before epoch theta (0-indexed epochs), L_c^1 + gamma L_c^2 after."""
    return l_c1 if epoch < theta else l_c1 + gamma * l_c2


def total_loss(distill: torch.Tensor, constraint: torch.Tensor, moe: torch.Tensor) -> torch.Tensor:
    """Eq. (16): L_total = L_distill + L_constraint + L_moe."""
    return distill + constraint + moe


def anomaly_map(
    f_star: torch.Tensor, f_hat_star: torch.Tensor, grid: tuple[int, int], size: int
) -> torch.Tensor:
    """Eq. (17): S = sum_i sigma_i(1 - d(f*_i, f^*_i)), d the per-patch cosine similarity,
    sigma_i bilinear up-sampling of the patch grid to `size` x `size`. -> (B, size, size).
    """
    distance = 1.0 - F.cosine_similarity(f_star, f_hat_star, dim=-1)  # (B, 3, L)
    distance = distance.view(distance.shape[0], distance.shape[1], *grid)
    upsampled = F.interpolate(distance, size=(size, size), mode="bilinear", align_corners=False)
    return upsampled.sum(dim=1)

"""The decoder: three residual attention blocks (the basic ViT block), reverse order.

Block k's output reconstructs the encoder's tap 4 - k: the first decoder block the
deepest tap, the last one the shallowest, as in reverse distillation
(`model.decoder_order: deep_first`; `shallow_first` reverses it).
"""

from __future__ import annotations

import torch
from open_clip.transformer import ResidualAttentionBlock
from torch import nn


class Decoder(nn.Module):
    def __init__(
        self, width: int, n_blocks: int = 3, head_width: int = 64, order: str = "deep_first"
    ) -> None:
        super().__init__()
        self.order = order  # "deep_first": block 1 -> the deepest tap; "shallow_first"
        heads = max(1, width // head_width)
        self.blocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, batch_first=True) for _ in range(n_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, C) -> decoded taps (B, 3, N, C), in the encoder's tap order."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return torch.stack(outputs[::-1] if self.order == "deep_first" else outputs, dim=1)


def perturb(features: torch.Tensor, std: float, generator: torch.Generator | None) -> torch.Tensor:
    """f^noise: Gaussian noise scaled by each token's own standard deviation (train only)."""
    if std <= 0:
        return features
    noise = torch.randn(features.shape, generator=generator, device=features.device)
    return features + std * features.std(dim=-1, keepdim=True) * noise

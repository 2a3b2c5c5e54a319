"""Class-agnostic learnable prompts (eqs. 2-3), one normal/abnormal pair per tapped layer.

The M learnable token vectors replace the embeddings of M placeholder words right after
the start token; the rest of the prompt ("object" or "damaged object") keeps CLIP's
own word embeddings. Initialised from N(0, 0.02) as in CoOp.
"""

from __future__ import annotations

import torch
from torch import nn

from cnc.model.backbone import FrozenCLIP

PLACEHOLDER = "X"


def normal_prompt(n_tokens: int) -> str:
    """Eq. (2): p_n = [V_1] ... [V_M] [object]."""
    return " ".join([PLACEHOLDER] * n_tokens + ["object"])


def abnormal_prompt(n_tokens: int) -> str:
    """Eq. (3): p_a = [V_1] ... [V_M] [damaged] [object]."""
    return " ".join([PLACEHOLDER] * n_tokens + ["damaged", "object"])


class LearnablePrompts(nn.Module):
    """Three sets of (normal, abnormal) prompts; `forward` gives g_n^i, g_a^i: (3, 2, D).

    The frozen encoder is passed to `forward` rather than held, so it is never saved or
    optimised with the prompts.
    """

    def __init__(self, encoder: FrozenCLIP, n_tokens: int = 12, n_layers: int = 3) -> None:
        super().__init__()
        # Token ids are data: made on the CPU even when the model is built on "meta".
        with torch.device("cpu"):
            tokens = encoder.tokenizer([normal_prompt(n_tokens), abnormal_prompt(n_tokens)])
        # The two prompts differ in length: each is read at its own end-of-text token.
        self.ends = tokens.argmax(dim=-1).tolist()
        embedding_device = encoder.clip.token_embedding.weight.device
        self.register_buffer("tokens", tokens.to(embedding_device), persistent=False)
        self.n_tokens = n_tokens
        self.n_layers = n_layers
        # (layer, normal/abnormal, token, width)
        self.context = nn.Parameter(torch.randn(n_layers, 2, n_tokens, encoder.text_width) * 0.02)

    def embeddings(self, encoder: FrozenCLIP) -> torch.Tensor:
        """Token embeddings (3, 2, context, W) with the learnable vectors spliced in."""
        fixed = encoder.clip.token_embedding(self.tokens)  # (2, context, W)
        fixed = fixed.unsqueeze(0).expand(self.n_layers, -1, -1, -1)
        start, rest = fixed[:, :, :1], fixed[:, :, 1 + self.n_tokens :]
        return torch.cat([start, self.context, rest], dim=2)

    def forward(self, encoder: FrozenCLIP) -> torch.Tensor:
        embeddings = self.embeddings(encoder)
        features = [
            encoder.encode_prompt_embeddings(embeddings[:, kind], self.ends[kind])
            for kind in (0, 1)
        ]
        return torch.stack(features, dim=1)

"""The frozen CLIP encoder, built through open_clip for the paper's backbones and the tiny
stand-ins alike.

Block outputs are tapped with open_clip's `forward_intermediates`; tap indices are
1-indexed block numbers. Features meet text features in CLIP's joint space: tokens go
through the visual `ln_post` and projection, then are L2-normalised.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from torch import nn

from cnc.settings import PAPER_BACKBONES, BackboneError, check_resolution, tiny_name

CONFIG_DIR = Path(__file__).parent / "configs"
open_clip.add_model_config(CONFIG_DIR)
HUB = ("huggingface.co", 443)


def cached_weights(backbone: str, tag: str) -> str | None:
    """The file of open_clip's pretrained `tag` in the Hugging Face cache, if it is there."""
    repo = open_clip.get_pretrained_cfg(backbone, tag).get("hf_hub", "").rstrip("/")
    for filename in (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME) if repo else ():
        found = huggingface_hub.try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    return None


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a download could work: HF_HUB_OFFLINE unset and huggingface.co answering."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        socket.create_connection(HUB, timeout=timeout_s).close()
    except OSError:
        return False
    return True


def weights_advice(backbone: str, problem: str) -> str:
    """`problem`, then the two ways to give the OpenAI weights without a download."""
    return (
        f"{problem}. Either\n"
        "  - give a checkpoint file: cnc train RUN --weights PATH (params.yaml: backbone: "
        "{weights: PATH}); make it where there is network with\n"
        f'    python -c "import open_clip, torch; torch.save(open_clip.create_model('
        f"'{backbone}', pretrained='openai').state_dict(), 'clip.pt')\"\n"
        f"  - or fill the cache there (open_clip.create_model('{backbone}', pretrained="
        "'openai')), copy ~/.cache/huggingface to this machine and set HF_HUB_OFFLINE=1 so "
        "nothing waits for the network"
    )


def resolve_weights(backbone: str, weights: str) -> str | None:
    """What open_clip is given to load: None ("random"), a checkpoint file, or "openai"
    when only a download can provide it. Cheap: a file that is missing, or a download
    that cannot work, is an error before anything is built (no hub retries)."""
    if weights == "random":
        return None
    if weights != "openai":
        if not Path(weights).is_file():
            raise BackboneError(
                f"backbone.weights {weights}: no such checkpoint file; give an existing one "
                "(cnc train RUN --weights PATH)"
            )
        return weights
    cached = cached_weights(backbone, weights)
    if cached is not None:
        return cached  # loaded as a file: no request to the hub at all
    if not hub_reachable():
        where = (
            f"the OpenAI weights of {backbone} are not in open_clip's cache (~/.cache/huggingface)"
        )
        raise BackboneError(
            weights_advice(backbone, f"{where} and huggingface.co cannot be reached")
        )
    return weights


def create_clip(
    backbone: str, weights: str, resolution: int, device: str | torch.device = "cpu"
) -> nn.Module:
    """An open_clip CLIP model at `resolution` (position embedding interpolated on load).

    weights: "openai" (open_clip's tag, from its cache or the network), a checkpoint file,
    or "random" (no weights; the tiny stand-ins and architecture tests). device "meta"
    builds the architecture without memory or compute (shape checks).
    """
    if backbone not in open_clip.list_models():
        known = ", ".join((*PAPER_BACKBONES, *(tiny_name(b) for b in PAPER_BACKBONES)))
        raise BackboneError(f"backbone {backbone!r} unknown; choose one of {known}")
    pretrained = resolve_weights(backbone, weights)
    quiet = logging.WARNING if pretrained is None else logging.NOTSET
    # On "meta" the tensors are also created there: no memory, no random initialisation.
    where = torch.device("meta") if str(device) == "meta" else contextlib.nullcontext()
    try:
        logging.disable(quiet)  # "no pretrained weights loaded" is the point of "random"
        with where:
            model = open_clip.create_model(
                backbone,
                pretrained=pretrained,
                force_quick_gelu=True,  # the OpenAI weights were trained with QuickGELU
                force_image_size=resolution,
                device=device,
            )
    except RuntimeError as exc:
        if pretrained != "openai":
            raise
        problem = f"could not download the OpenAI weights of {backbone} ({exc})"
        raise BackboneError(weights_advice(backbone, problem)) from None
    finally:
        logging.disable(logging.NOTSET)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass(frozen=True)
class Taps:
    """Tapped block outputs: class tokens (B, 3, C) and patch tokens (B, 3, L, C)."""

    cls: torch.Tensor
    patches: torch.Tensor


class FrozenCLIP(nn.Module):
    """The frozen visual and text encoders, and the maps into the joint space."""

    def __init__(
        self,
        backbone: str,
        weights: str,
        resolution: int,
        taps: tuple[int, ...],
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        self.backbone = backbone
        self.clip = create_clip(backbone, weights, resolution, device)
        check_resolution(backbone, resolution, self.clip.visual.patch_size[0])
        depth = len(self.clip.visual.transformer.resblocks)
        if len(taps) != 3 or not all(1 <= t <= depth for t in taps) or list(taps) != sorted(taps):
            raise BackboneError(f"taps {taps}: need three increasing block numbers in 1..{depth}")
        self.taps = tuple(taps)
        self.resolution = resolution
        self.tokenizer = open_clip.get_tokenizer(backbone)
        logging.getLogger(__name__).debug("built %s at %d px", backbone, resolution)

    @property
    def width(self) -> int:
        """C: channels of the tapped visual tokens."""
        return self.clip.visual.conv1.out_channels

    @property
    def text_width(self) -> int:
        return self.clip.token_embedding.embedding_dim

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.clip.visual.grid_size)

    @property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        cfg = self.clip.visual.preprocess_cfg
        return tuple(cfg["mean"]), tuple(cfg["std"])

    def train(self, mode: bool = True) -> FrozenCLIP:
        return super().train(False)  # frozen: dropout and friends stay off

    @torch.no_grad()
    def encode_taps(self, images: torch.Tensor) -> Taps:
        """f_1..f_3 (patch tokens) and their class tokens, from one forward pass."""
        out = self.clip.visual.forward_intermediates(
            images,
            indices=[t - 1 for t in self.taps],
            stop_early=True,
            intermediates_only=True,
            output_fmt="NLC",
            output_extra_tokens=True,
        )
        patches = torch.stack(out["image_intermediates"], dim=1)
        cls = torch.stack([t[:, 0] for t in out["image_intermediates_prefix"]], dim=1)
        return Taps(cls, patches)

    def to_joint(self, tokens: torch.Tensor) -> torch.Tensor:
        """Visual tokens (..., C) -> unit vectors in the joint space (..., D)."""
        visual = self.clip.visual
        return F.normalize(visual.ln_post(tokens) @ visual.proj, dim=-1)

    def encode_prompt_embeddings(self, embeddings: torch.Tensor, eot: int) -> torch.Tensor:
        """Text features of token embeddings (P, n, W) whose end-of-text token sits at `eot`.

        The causal mask means tokens after the end-of-text token cannot change its output,
        so only the first `eot + 1` positions are run (exactly equal, several times faster).
        """
        clip = self.clip
        n = eot + 1
        x = embeddings[:, :n] + clip.positional_embedding[:n]
        x = clip.transformer(x, attn_mask=clip.attn_mask[:n, :n])
        x = clip.ln_final(x[:, eot])
        return F.normalize(x @ clip.text_projection, dim=-1)

"""Building the encoder and the trainable model the same way for training and inference."""

from __future__ import annotations

import hashlib

import torch

from cnc.model.backbone import FrozenCLIP
from cnc.model.cnc import CNC
from cnc.settings import ArchConfig


def encoder_fingerprint(encoder: FrozenCLIP) -> str:
    """A hash of a few distinctive frozen tensors: a changed encoder is detected on load."""
    digest = hashlib.sha256()
    clip = encoder.clip
    for tensor in (clip.visual.conv1.weight, clip.visual.proj, clip.token_embedding.weight):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def build(arch: ArchConfig, device: str | torch.device = "cpu") -> tuple[FrozenCLIP, CNC]:
    """Encoder and model, their random initial weights fixed by `arch.seed` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(arch.seed)
        encoder = FrozenCLIP(arch.backbone, arch.weights, arch.resolution, arch.taps)
        model = CNC(encoder, arch.model)
    return encoder.to(device), model.to(device)

"""Building the encoder and the trainable network the same way for training and inference."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from cnc.model.backbone import FrozenCLIP
from cnc.model.network import CNCNetwork
from cnc.settings import RunSettings


@dataclass
class Network:
    """A run's frozen encoder and trainable network, built from its settings."""

    settings: RunSettings
    encoder: FrozenCLIP
    model: CNCNetwork


def encoder_fingerprint(encoder: FrozenCLIP) -> str:
    """A hash of a few distinctive frozen tensors: a changed encoder is detected on load."""
    digest = hashlib.sha256()
    clip = encoder.clip
    for tensor in (clip.visual.conv1.weight, clip.visual.proj, clip.token_embedding.weight):
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def build(
    settings: RunSettings, device: str | torch.device = "cpu"
) -> tuple[FrozenCLIP, CNCNetwork]:
    """Encoder and network, their random initial weights fixed by `settings.seed` alone."""
    b = settings.backbone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        encoder = FrozenCLIP(b.name, b.weights, b.resolution, b.taps)
        model = CNCNetwork(encoder, settings.model)
    return encoder.to(device), model.to(device)

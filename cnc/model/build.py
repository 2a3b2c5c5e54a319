"""Building the encoder and the trainable model the same way for training and inference."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import torch

from cnc.model.backbone import FrozenCLIP, default_taps
from cnc.model.cnc import CNC, ModelConfig


@dataclass(frozen=True)
class ArchConfig:
    """What decides the network: backbone, weights, input size, taps and the method."""

    backbone: str
    weights: str = "openai"  # "openai", "random" or a checkpoint file
    resolution: int = 224
    taps: tuple[int, int, int] | None = None  # None: the backbone's default
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0  # also seeds the random weights of "random" encoders

    def __post_init__(self) -> None:
        # Stored resolved, so a run's settings say which blocks were tapped.
        taps = tuple(self.taps) if self.taps else default_taps(self.backbone)
        object.__setattr__(self, "taps", taps)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["taps"] = list(self.taps)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ArchConfig:
        data = dict(data)
        data["model"] = ModelConfig(**data["model"])
        data["taps"] = tuple(data["taps"]) if data.get("taps") else None
        return cls(**data)


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

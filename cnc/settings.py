"""A run's settings: plain dataclasses, free of torch, so the workflow, the grid and the
reports load them in a fraction of a second. The modules that act on them import them
from here (model.cnc: ModelConfig, model.build: ArchConfig, train: TrainConfig,
infer: InferConfig)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cnc.errors import SettingsError, UserError

# What a run folder holds.
CONFIG = "config.json"
TRAIN_LOG = "train_log.csv"
CHECKPOINT = "checkpoint.pt"  # resumable state while training runs
FINAL = "model.pt"  # the finished run
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
HEATMAPS_DIR = "heatmaps"
PAPER_EPOCHS = {"mvtec": 250, "visa": 200}  # the paper's training lengths
MASK_RULE = "mask != 0, bilinear (antialiased) resize of the 0/1 mask, then > 0.5"
IMAGE_SCORE_RULE = "maximum of the smoothed anomaly map"

PAPER_BACKBONES = ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336")
TINY_PREFIX = "cnc-tiny-"
# Evenly spread blocks ending at the last one (the paper does not publish its choice).
DEFAULT_TAPS = {
    "ViT-B-32": (4, 8, 12),
    "ViT-B-16": (4, 8, 12),
    "ViT-L-14": (8, 16, 24),
    "ViT-L-14-336": (8, 16, 24),
}
TINY_TAPS = (2, 4, 6)


class BackboneError(UserError):
    """The backbone cannot be built; the message says how to fix it."""


def tiny_name(backbone: str) -> str:
    return TINY_PREFIX + backbone


def default_taps(backbone: str) -> tuple[int, int, int]:
    if backbone.startswith(TINY_PREFIX):
        return TINY_TAPS
    if backbone not in DEFAULT_TAPS:
        raise BackboneError(
            f"backbone {backbone!r} has no default taps; give three block numbers (--taps) "
            f"or choose one of {', '.join(PAPER_BACKBONES)}"
        )
    return DEFAULT_TAPS[backbone]


@dataclass(frozen=True)
class ModelConfig:
    """The method's switches and hyperparameters (paper values as defaults)."""

    mlf: bool = True
    cnc: bool = True
    moe_experts: int = 5  # T; 0 means no MoE ("None" in Table 4)
    moe_top_k: int = 2  # K
    prompt_tokens: int = 12
    tau: float = 0.001
    gamma: float = 0.1
    theta: int = 5
    noise_std: float = 0.1
    mlf_dropout: float = 0.1
    expert_hidden_ratio: float = 1.0
    decoder_head_width: int = 64

    def __post_init__(self) -> None:
        if self.moe_experts < 0:
            raise SettingsError(f"moe_experts={self.moe_experts}: T must be >= 0 (0 = no MoE)")
        if self.moe_experts and not 1 <= self.moe_top_k <= self.moe_experts:
            raise SettingsError(
                f"moe_top_k={self.moe_top_k} with moe_experts={self.moe_experts}: "
                "K must satisfy 1 <= K <= T"
            )


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


@dataclass(frozen=True)
class TrainConfig:
    arch: ArchConfig
    dataset: str
    data_root: str
    epochs: int
    classes: tuple[str, ...] | None = None
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    checkpoint_every: int = 10
    cache: str = "auto"  # auto, memory, disk or off (re-encode every step)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise SettingsError("epochs, batch_size and checkpoint_every must be >= 1")
        if self.cache not in ("auto", "memory", "disk", "off"):
            raise SettingsError(f"cache={self.cache!r}: choose auto, memory, disk or off")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["arch"] = ArchConfig.from_dict(data["arch"])
        data["classes"] = tuple(data["classes"]) if data.get("classes") else None
        data["betas"] = tuple(data["betas"])
        return cls(**data)


@dataclass(frozen=True)
class InferConfig:
    map_size: int = 256  # evaluation size of every map, whatever the input resolution
    sigma: float = 4.0  # Gaussian smoothing in map pixels; 0 = none
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.map_size < 8 or self.sigma < 0 or self.batch_size < 1:
            raise SettingsError("map_size must be >= 8, sigma >= 0 and batch_size >= 1")

    def protocol(self) -> dict[str, Any]:
        return {
            "map_size": self.map_size,
            "smoothing_sigma": self.sigma,
            "mask_rule": MASK_RULE,
            "image_score": IMAGE_SCORE_RULE,
        }

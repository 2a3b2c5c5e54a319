"""A run's settings: one object per job, torch-free so the workflow loads it fast.

`RunSettings` has five sections, each a frozen dataclass: `data` (what is trained on),
`backbone` (the frozen encoder), `model` (the method's switches and hyperparameters),
`train` and `infer`, plus the `seed`. Every default is written once, as a dataclass
field below (the paper's values where the paper gives one); params.yaml, `--settings`
and `--set key=value` only override. Types and ranges live in cnc/schema.yaml and are
checked whenever a section is built, whatever the source.

The same dictionary shape is a run's `config.json`, the workflow's `--settings` and the
`--set` keys (`model.gamma=0.2`, `train.epochs=3`, `backbone.name=ViT-B-16`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import yaml

from cnc.errors import SettingsError, UserError
from cnc.params import read_yaml_value
from cnc.schema import validate

PAPER_BACKBONES = ("ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-L-14-336")
TINY_PREFIX = "cnc-tiny-"
DEPTHS = {"ViT-B-32": 12, "ViT-B-16": 12, "ViT-L-14": 24, "ViT-L-14-336": 24}  # blocks
PATCHES = {"ViT-B-32": 32, "ViT-B-16": 16, "ViT-L-14": 14, "ViT-L-14-336": 14}  # pixels
TINY_DEPTH = 6  # cnc/model/configs/cnc-tiny-*.json
# Tapped blocks as fractions of the depth (the paper does not publish its choice):
# "thirds" (the default) ends at the last block, 8/16/24 of ViT-L's 24; "quarters" is
# the other common spread, 6/12/18. A scheme means the same at every depth.
TAP_SCHEMES = {
    "thirds": (1 / 3, 2 / 3, 1.0),
    "quarters": (1 / 4, 2 / 4, 3 / 4),
    "quarters_last": (1 / 4, 2 / 4, 1.0),  # 6/12/24: shallower taps, the last block kept
}
# The paper's training length per dataset (250 MVTec AD, 200 VisA), and its rule carried
# to datasets it did not use: MVTec AD's for sets of a few hundred training images per
# class, VisA's for the larger Real-IAD (docs/REPRODUCTION.md).
PAPER_EPOCHS = {"mvtec": 250, "visa": 200, "mvtec_ad2": 250, "mpdd": 250, "btad": 250,
                "realiad": 200}  # fmt: skip
MASK_RULE = "mask != 0, bilinear (antialiased) resize of the 0/1 mask, then > 0.5"
IMAGE_SCORE_RULE = "maximum of the smoothed anomaly map"
BOOTSTRAP_RULE = "per class, normal and anomalous test images separately, with replacement"
MIN_BOOTSTRAP = 100  # fewer replicates leave under 3 in each tail of a 95 % interval


class BackboneError(UserError):
    """The backbone cannot be built; the message says how to fix it."""


def tiny_name(backbone: str) -> str:
    return TINY_PREFIX + backbone


def resolve_taps(backbone: str, taps: tuple[int, ...] | str | None) -> tuple[int, int, int]:
    """Block numbers (1-indexed) from numbers, a scheme name or None (= "thirds"); a
    scheme's fractions of the depth are rounded half up (quarters of 6: 2, 3, 5)."""
    if taps is not None and not isinstance(taps, str):
        return tuple(taps)
    depth = TINY_DEPTH if backbone.startswith(TINY_PREFIX) else DEPTHS.get(backbone)
    if depth is None:
        raise BackboneError(
            f"backbone {backbone!r}: depth unknown, so no tap scheme; give three block "
            f"numbers (--set backbone.taps=[i,j,k]) or choose one of {', '.join(PAPER_BACKBONES)}"
        )
    return tuple(math.floor(f * depth + 0.5) for f in TAP_SCHEMES[taps or "thirds"])


def patch_size(backbone: str) -> int | None:
    """A paper backbone's patch size in pixels (its tiny stand-in's is the same); None for
    other open_clip models (the encoder checks those when it is built)."""
    return PATCHES.get(backbone.removeprefix(TINY_PREFIX))


def fit_resolution(backbone: str, resolution: int) -> int:
    """The multiple of the backbone's patch size nearest to `resolution` (halves round
    up): the paper's 256 px with ViT-L/14 is 252, so the patches tile the image exactly."""
    patch = patch_size(backbone)
    return resolution if patch is None else max(patch, math.floor(resolution / patch + 0.5) * patch)


def check_resolution(backbone: str, resolution: int, patch: int | None = None) -> None:
    """A resolution the patches do not tile is refused, naming the nearest valid sizes: the
    encoder would drop the pixels past the last whole patch and its grid would be stretched
    over the whole map."""
    patch = patch or patch_size(backbone)
    if patch is None or resolution % patch == 0:
        return
    below = resolution // patch * patch
    sizes = " or ".join(str(s) for s in (below, below + patch) if s > 0)
    raise SettingsError(
        f"backbone.resolution={resolution}: not a multiple of {backbone}'s patch size "
        f"{patch}, so the patches would not cover the image; choose {sizes}"
    )


def _jsonable(value: Any) -> Any:
    """Tuples as lists, recursively: the form of JSON, YAML and the schema."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _Section:
    """A validated, frozen group of settings named after its `$defs` entry."""

    SECTION = ""

    def __post_init__(self) -> None:
        for f in fields(self):  # lists from JSON or YAML become tuples (hashable, frozen)
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        checked = validate(self.to_dict(), "settings", self.SECTION, f"{self.SECTION}.")
        for f in fields(self):  # "1e-4" from YAML 1.1, made a number by the validation
            value = checked.get(f.name)
            if isinstance(getattr(self, f.name), str) and isinstance(value, int | float):
                object.__setattr__(self, f.name, value)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: Any, source: str = "settings") -> Any:
        validate(data, source, cls.SECTION, f"{cls.SECTION}.")  # unknown keys named first
        return cls(**data)


@dataclass(frozen=True)
class DataSettings(_Section):
    """What a run trains and is tested on: an MVTec-layout folder."""

    SECTION = "data"
    dataset: str  # mvtec, visa, synthetic or a name of your own (reports and paper epochs)
    root: str
    classes: tuple[str, ...] | None = None  # None: every class folder of the root


@dataclass(frozen=True)
class BackboneSettings(_Section):
    """The frozen CLIP encoder."""

    SECTION = "backbone"
    name: str = "ViT-L-14-336"  # the paper's backbone (open_clip name, or cnc-tiny-<name>)
    weights: str = "openai"  # "openai", "random" or a checkpoint file
    resolution: int = 224  # the paper's input size
    # Three block numbers, or a scheme of TAP_SCHEMES; None = "thirds".
    taps: tuple[int, int, int] | str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_resolution(self.name, self.resolution)
        # Stored resolved, so a run's settings say which blocks were tapped.
        object.__setattr__(self, "taps", resolve_taps(self.name, self.taps))


# A switch's "off" value and the model settings that only matter when it is on.
SWITCHED_OFF = {
    "constraint": (
        False,
        ("prompt_tokens", "tau", "gamma", "theta", "prompt_grad", "fnp_norm", "fnp_hat_norm"),
    ),
    "moe_experts": (0, ("moe_top_k", "expert_hidden_ratio", "moe_renormalise")),
}


@dataclass(frozen=True)
class ModelSettings(_Section):
    """The method's switches and hyperparameters (the paper's values as defaults)."""

    SECTION = "model"
    mlf: bool = True  # multi-layer fusion (eq. 12)
    constraint: bool = True  # the cross-modal normality constraint (prompts, eqs. 4-11)
    moe_experts: int = 5  # T; 0 means no MoE ("None" in Table 4)
    moe_top_k: int = 2  # K
    prompt_tokens: int = 12
    tau: float = 0.001
    gamma: float = 0.1
    theta: int = 5
    noise_std: float = 0.1  # not in the paper: docs/REPRODUCTION.md
    mlf_dropout: float = 0.1  # not in the paper
    expert_hidden_ratio: float = 1.0  # not in the paper
    decoder_head_width: int = 64  # not in the paper
    # "eq4": the prompts learn from L_c1 only, eqs. 5-10 use them as fixed anchors (the
    # paper: text features "trained by (4)"); "all": every loss term moves them.
    prompt_grad: str = "eq4"
    # lambda of eqs. 5 and 8: "map": 1/||f_i|| over the layer's whole feature map (the
    # paper's f_i in R^{H x W x C}); "patch": each patch embedding's own norm.
    fnp_norm: str = "map"
    # eq. 8's lambda: "shared": eq. 5's, from the encoder's f_i (the paper writes one
    # lambda); "own": from the decoded f^_i itself, with the same norm.
    fnp_hat_norm: str = "shared"
    # e_i and e^_i of eqs. 1-4, the global features: "class_token": each tap's class token
    # and its decoded counterpart (the class token goes through fusion, MoE and decoder
    # with the patches); "patch_mean": the mean of the patch tokens, encoded and decoded
    # (only patches are decoded: the router sees the paper's R = B*H*W tokens).
    global_feature: str = "class_token"
    # Which tap the decoder's first block reconstructs: "deep_first" (reverse
    # distillation: the deepest, f_3) or "shallow_first" (f_1).
    decoder_order: str = "deep_first"
    # Eq. 14's top-K weights as the router's softmax gives them (False) or renormalised
    # to sum to 1 over the K chosen experts (True).
    moe_renormalise: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.moe_experts and not 1 <= self.moe_top_k <= self.moe_experts:
            raise SettingsError(
                f"model.moe_top_k={self.moe_top_k} with model.moe_experts={self.moe_experts}: "
                "K must satisfy 1 <= K <= T"
            )
        defaults = {f.name: f.default for f in fields(self)}
        for key in self.unused():  # so equal settings compare and hash equal
            object.__setattr__(self, key, defaults[key])

    def unused(self) -> tuple[str, ...]:
        """The settings this run's switches turn off (SWITCHED_OFF)."""
        return tuple(
            key
            for switch, (off, keys) in SWITCHED_OFF.items()
            if getattr(self, switch) == off
            for key in keys
        )

    def to_dict(self) -> dict[str, Any]:
        """Without the settings the switches turn off: a change to them is no change to
        this run, so the workflow re-runs nothing for it."""
        data = super().to_dict()
        for key in self.unused():
            del data[key]
        return data


@dataclass(frozen=True)
class TrainSettings(_Section):
    SECTION = "train"
    epochs: int | None = None  # None: the paper's for the dataset (PAPER_EPOCHS)
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)  # not in the paper: docs/REPRODUCTION.md
    checkpoint_every: int = 10
    # auto: fp32 on a CPU, bf16 on a GPU that has it (else fp16); fp32, tf32, bf16, fp16
    precision: str = "auto"
    cache: str = "auto"  # feature cache: auto, gpu, memory, disk or off (re-encode)
    cache_dtype: str = "float16"  # the cached features' type: float16 or float32
    cache_dir: str | None = None  # where a cache on disk goes; None: the run folder
    workers: int | None = None  # DataLoader workers; None: 0 on a CPU, up to 8 on a GPU
    # CPU threads of the job; None: what the workflow gives it (cnc.training.devices)
    threads: int | None = None


@dataclass(frozen=True)
class InferSettings(_Section):
    SECTION = "infer"
    # Eq. 17's up-sampling "to keep the same size as the input image": None = the run's
    # input resolution; a number evaluates every run at that size instead.
    map_size: int | None = None
    batch_size: int = 16

    def protocol(self) -> dict[str, Any]:
        return {"map_size": self.map_size, "mask_rule": MASK_RULE}


@dataclass(frozen=True)
class EvaluateSettings(_Section):
    """How saved maps are scored; not part of a run's settings, so a change re-runs the
    evaluation only (the maps are saved before smoothing)."""

    SECTION = "evaluate"
    # Gaussian smoothing in map pixels (not in the paper; the field's common addition,
    # sigma 4 at 256 px); 0 = none. docs/REPRODUCTION.md says why it is not rescaled.
    sigma: float = 4.0
    # Bootstrap replicates per class for the 95 % intervals (cnc.evaluation.bootstrap);
    # 0 = none. Their draws depend on the seed and the class alone, so runs evaluated on
    # the same test images share them (paired differences).
    bootstrap: int = 1000
    bootstrap_seed: int = 0
    # Which runs the workflow draws heat maps for: "main" (Tables 1 and 3), "all", "none".
    heatmaps: str = "main"

    def __post_init__(self) -> None:
        super().__post_init__()
        if 0 < self.bootstrap < MIN_BOOTSTRAP:
            raise SettingsError(
                f"evaluate.bootstrap={self.bootstrap}: give 0 (no intervals) or at least "
                f"{MIN_BOOTSTRAP} replicates; a 95 % percentile interval rests on its 2.5 % "
                "tails, which fewer replicates leave nearly empty"
            )

    def protocol(self) -> dict[str, Any]:
        """How a number was scored (metrics.json's `protocol`; SCORING the keys that must
        agree for two numbers to compare)."""
        return {
            "smoothing_sigma": self.sigma,
            "image_score": IMAGE_SCORE_RULE,
            "bootstrap": {
                "replicates": self.bootstrap,
                "seed": self.bootstrap_seed,
                "resampling": BOOTSTRAP_RULE,
                "interval": "95 % percentile",
            },
        }


# The evaluation protocol's keys that must agree for two runs' numbers to compare (the
# map size may differ: it follows each run's input resolution by default).
SCORING = ("smoothing_sigma", "image_score", "mask_rule", "bootstrap")

SECTIONS: dict[str, type[_Section]] = {
    "data": DataSettings,
    "backbone": BackboneSettings,
    "model": ModelSettings,
    "train": TrainSettings,
    "infer": InferSettings,
}
# How a run is computed, not what it learns: ignored when a finished run is reused.
# train.threads too: it changes CPU numbers in their last digits, so the count a run used
# is recorded with it (provenance.json, the reports) instead of retraining on a new one.
EXECUTION_ONLY = ("train.checkpoint_every", "train.cache_dir", "train.workers", "train.threads")
# What may also change between an interrupted run and its continuation.
RESUMABLE_CHANGES = (*EXECUTION_ONLY, "train.epochs", "train.cache")


@dataclass(frozen=True)
class RunSettings:
    """Everything one job (a run: training, then its test maps) depends on."""

    data: DataSettings
    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    infer: InferSettings = field(default_factory=InferSettings)
    seed: int = 0  # model initialisation, random encoder weights, order and noise

    def __post_init__(self) -> None:
        if self.infer.map_size is None:  # stored resolved, as the taps and epochs
            infer = replace(self.infer, map_size=self.backbone.resolution)
            object.__setattr__(self, "infer", infer)
        if self.train.epochs is None:
            if self.data.dataset not in PAPER_EPOCHS:
                raise SettingsError(
                    f"train.epochs: required for dataset {self.data.dataset!r} (the paper "
                    f"trains {', '.join(f'{d} {e}' for d, e in PAPER_EPOCHS.items())})"
                )
            epochs = PAPER_EPOCHS[self.data.dataset]
            object.__setattr__(self, "train", replace(self.train, epochs=epochs))

    def to_dict(self) -> dict[str, Any]:
        return {**{name: getattr(self, name).to_dict() for name in SECTIONS}, "seed": self.seed}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "settings") -> RunSettings:
        """Settings from their dictionary form; missing keys take their defaults."""
        validate(data, source, "run")
        if "data" not in data:
            raise SettingsError(
                f"{source}: data.dataset and data.root are required (e.g. --set data.root=PATH "
                "--set data.dataset=mvtec), or train a run of the grid with --run NAME"
            )
        sections = {name: SECTIONS[name](**data[name]) for name in SECTIONS if name in data}
        return cls(**sections, seed=data.get("seed", 0))

    def with_overrides(self, overrides: list[str]) -> RunSettings:
        """A copy with `section.key=value` assignments applied (values read as YAML)."""
        if not overrides:
            return self
        return RunSettings.from_dict(apply_overrides(self.to_dict(), overrides), "--set")

    def resolved(self) -> RunSettings:
        """With the data root made absolute: a run records where its data is, whatever
        folder a later command runs from."""
        root = os.path.abspath(os.path.expanduser(self.data.root))
        return replace(self, data=replace(self.data, root=root))

    def identity(self, ignore: tuple[str, ...] = EXECUTION_ONLY) -> dict[str, Any]:
        """What decides the trained weights (everything but inference and where the data
        lies: which data it is, the training checks by its content), less `ignore`."""
        data = self.to_dict()
        del data["infer"]
        del data["data"]["root"]
        for dotted in ignore:
            section, key = dotted.split(".")
            del data[section][key]
        return data


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """`model.gamma=0.2` -> (["model", "gamma"], 0.2); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"--set {text!r}: expected section.key=value, e.g. model.gamma=0.2")
    try:
        value = read_yaml_value(raw)
    except yaml.YAMLError as exc:
        raise SettingsError(f"--set {text!r}: the value is not valid YAML ({exc})") from None
    return key.strip().split("."), value


def apply_overrides(base: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`base` (a settings dictionary) with each assignment applied to a deep copy."""
    result = json.loads(json.dumps(base))
    for text in overrides:
        path, value = parse_assignment(text)
        node = result
        for key in path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise SettingsError(f"--set {text!r}: {key} is not a section")
        node[path[-1]] = value
    return result

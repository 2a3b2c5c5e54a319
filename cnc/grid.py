"""The paper's experiment grid: params.yaml -> the runs to train and the tables' cells.

A run stands for one point of the paper's grid and is named after it (paper dataset,
backbone, resolution, switches, MoE, seed), whatever the scale; the scale decides what
is actually trained for it (the synthetic set and a tiny stand-in at the smoke scale).
A run that several tables share is listed once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnc.config import ConfigError
from cnc.errors import UserError
from cnc.settings import ArchConfig, InferConfig, ModelConfig, TrainConfig, tiny_name

RUNS_DIR = "results/runs"
REPORTS_DIR = "results/reports"
FIGURES_DIR = "results/figures"
TABLES = ("table1", "table2", "table3", "table4")
REPORT_FILES = (
    *(f"{t}.{ext}" for t in TABLES for ext in ("md", "tex", "csv")),
    "fig4.csv",
    "summary.json",
    "README.md",
)
FIGURE_FILES = ("fig4.png", "table4_heatmap.png", "ablation.png", "training_curves.png")


@dataclass(frozen=True, order=True)
class GridPoint:
    """One point of the paper's grid."""

    role: str  # the paper's dataset: mvtec or visa
    backbone: str  # a paper backbone name, e.g. ViT-L-14-336
    resolution: int  # the paper's input resolution
    mlf: bool
    cnc: bool
    experts: int  # T; 0 = no MoE
    top_k: int  # K (0 when there is no MoE)
    seed: int

    @property
    def name(self) -> str:
        backbone = self.backbone.lower().replace("vit-", "vit").replace("-", "", 1)
        backbone = backbone.replace("-", "_")
        moe = f"moeT{self.experts}K{self.top_k}" if self.experts else "nomoe"
        parts = (
            self.role,
            backbone,
            f"r{self.resolution}",
            "mlf" if self.mlf else "nomlf",
            "cnc" if self.cnc else "nocnc",
            moe,
            f"s{self.seed}",
        )
        return "-".join(parts)


def _main(params: dict[str, Any], role: str, seed: int, **changes: Any) -> GridPoint:
    m = params["main"]
    fields = {
        "role": role,
        "backbone": m["backbone"],
        "resolution": m["resolution"],
        "mlf": m["mlf"],
        "cnc": m["cnc"],
        "experts": m["experts"],
        "top_k": m["top_k"],
        "seed": seed,
        **changes,
    }
    if not fields["experts"]:
        fields["top_k"] = 0
    return GridPoint(**fields)


@dataclass(frozen=True)
class Cell:
    """One cell of a table or figure: its row and column, and one run per seed."""

    row: str
    column: str
    points: tuple[GridPoint, ...]

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.points)


def cells(params: dict[str, Any]) -> dict[str, list[Cell]]:
    """For each table and figure, its cells in the paper's order."""
    ex, seeds = params["experiments"], params["seeds"]

    def cell(row: str, column: str, role: str, **changes: Any) -> Cell:
        return Cell(row, column, tuple(_main(params, role, s, **changes) for s in seeds))

    t2, t4, f4 = ex["table2"], ex["table4"], ex["fig4"]
    moe_on = params["main"]["experts"]
    return {
        "table1": [cell("main", "", ex["table1"]["dataset"])],
        "table2": [
            cell(row, "", t2["dataset"], mlf=mlf, cnc=cnc, experts=moe_on if moe else 0)
            for row, (mlf, cnc, moe) in t2["rows"].items()
        ],
        "table3": [cell("main", "", ex["table3"]["dataset"])],
        "table4": [cell("None", "", t4["dataset"], experts=0)]
        + [
            cell(f"T={t}", f"K={k}", t4["dataset"], experts=t, top_k=k)
            for t in t4["experts"]
            for k in t4["top_k"]
            if k <= t
        ],
        "fig4": [
            cell(b, str(r), f4["dataset"], backbone=b, resolution=r)
            for b in f4["backbones"]
            for r in f4["resolutions"]
        ],
    }


def grid_points(params: dict[str, Any]) -> dict[str, GridPoint]:
    """Every run of every table and figure, once, by name (sorted)."""
    points = {p for table in cells(params).values() for c in table for p in c.points}
    return {p.name: p for p in sorted(points)}


# ----------------------------------------------------------------------------- resolving


def scale_settings(params: dict[str, Any]) -> dict[str, Any]:
    return params["scales"][params["scale"]]


def dataset_of(params: dict[str, Any], point: GridPoint) -> str:
    return scale_settings(params)["datasets"][point.role]


def train_config(params: dict[str, Any], point: GridPoint) -> TrainConfig:
    """What is trained for `point` at the chosen scale."""
    sc = scale_settings(params)
    dataset = dataset_of(params, point)
    root = params["data"][dataset]["root"]
    if root is None:
        raise ConfigError(f"data.{dataset}.root: not set; give the dataset folder in params.yaml")
    divisor = sc["resolution_divisor"]
    if point.resolution % divisor:
        raise ConfigError(
            f"scales.{params['scale']}.resolution_divisor: {divisor} does not divide "
            f"resolution {point.resolution}"
        )
    model = ModelConfig(
        mlf=point.mlf,
        cnc=point.cnc,
        moe_experts=point.experts,
        moe_top_k=point.top_k if point.experts else 0,
        **{**params["model"], **sc.get("model", {})},
    )
    arch = ArchConfig(
        backbone=tiny_name(point.backbone) if sc["tiny_backbones"] else point.backbone,
        weights=sc["weights"],
        resolution=point.resolution // divisor,
        model=model,
        seed=point.seed,
    )
    t = params["train"]
    return TrainConfig(
        arch=arch,
        dataset=dataset,
        data_root=str(root),
        epochs=sc["epochs"][point.role],
        batch_size=t["batch_size"],
        lr=t["lr"],
        betas=tuple(t["betas"]),
        checkpoint_every=t["checkpoint_every"],
        cache=t["cache"],
    )


def infer_config(params: dict[str, Any]) -> InferConfig:
    i = params["infer"]
    return InferConfig(
        map_size=scale_settings(params)["map_size"], sigma=i["sigma"], batch_size=i["batch_size"]
    )


def check_grid(params: dict[str, Any]) -> dict[str, GridPoint]:
    """Every run resolved once, so a bad combination fails before anything runs."""
    points = grid_points(params)
    used = sorted({dataset_of(params, p) for p in points.values()})
    missing = [d for d in used if d not in params["data"]["prepare"]]
    if missing:
        raise ConfigError(
            f"data.prepare: scale {params['scale']} trains on {', '.join(used)}; add "
            f"{', '.join(missing)} to data.prepare (downloaded, or placed at data.<name>.root)"
        )
    for name, point in points.items():
        try:
            train_config(params, point)
        except UserError as exc:
            raise ConfigError(f"run {name}: {exc}") from None
    return points


def main_runs(params: dict[str, Any]) -> list[str]:
    """The runs of Tables 1 and 3 (the main configuration on each dataset, every seed)."""
    grid = cells(params)
    return sorted({r for t in ("table1", "table3") for c in grid[t] for r in c.runs})


def run_dir(params: dict[str, Any], name: str) -> str:
    return f"{RUNS_DIR}/{params['scale']}/{name}"

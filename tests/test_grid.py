"""The experiment grid: shared runs trained once, readable names, scales, bad settings."""

from __future__ import annotations

import copy

import pytest
import yaml

from cnc import grid
from cnc.config import PROJECT, ConfigError, validate_params

PARAMS = yaml.safe_load((PROJECT / "params.yaml").read_text())
MAIN = "mvtec-vitl14_336-r224-mlf-cnc-moeT5K2-s0"


def params(**changes):
    p = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        node = p
        *path, last = dotted.split("__")
        for key in path:
            node = node[key]
        node[last] = value
    return p


def test_the_main_run_is_shared_by_tables_1_2_4_and_fig4():
    c = grid.cells(PARAMS)
    assert c["table1"][0].runs == (MAIN,)
    assert next(x for x in c["table2"] if x.row == "vii").runs == (MAIN,)
    assert next(x for x in c["table4"] if (x.row, x.column) == ("T=5", "K=2")).runs == (MAIN,)
    assert next(x for x in c["fig4"] if (x.row, x.column) == ("ViT-L-14-336", "224")).runs == (
        MAIN,
    )
    # Table 2 row v (MLF, CNC, no MoE) is Table 4's "None" row.
    v = next(x for x in c["table2"] if x.row == "v")
    assert v.runs == c["table4"][0].runs == ("mvtec-vitl14_336-r224-mlf-cnc-nomoe-s0",)


def test_grid_size_and_seeds():
    points = grid.grid_points(PARAMS)
    # 7 ablation rows + None + 21 (T, K) + 16 backbone x resolution + VisA, minus shared.
    assert len(points) == 43
    assert sum(1 for n in points if n.startswith("visa-")) == 1
    two = grid.grid_points(params(seeds=[0, 1]))
    assert len(two) == 86 and {n[-2:] for n in two} == {"s0", "s1"}
    assert all(len(c.runs) == 2 for t in grid.cells(params(seeds=[0, 1])).values() for c in t)


def test_table4_cells_are_every_t_and_k_with_k_at_most_t():
    t4 = grid.cells(PARAMS)["table4"]
    pairs = [(c.row, c.column) for c in t4[1:]]
    assert len(pairs) == 21 and ("T=2", "K=3") not in pairs and ("T=6", "K=6") in pairs
    assert t4[0].row == "None" and t4[0].points[0].experts == 0


def test_smoke_scale_resolves_to_tiny_backbones_on_synthetic_data():
    point = grid.grid_points(PARAMS)[MAIN]
    config = grid.train_config(PARAMS, point)
    assert config.arch.backbone == "cnc-tiny-ViT-L-14-336"
    assert config.arch.weights == "random"
    assert config.arch.resolution == 112
    assert config.dataset == "synthetic" and config.data_root == "data/synthetic"
    assert config.arch.model.theta == PARAMS["scales"]["smoke"]["model"]["theta"]
    assert grid.infer_config(PARAMS).map_size == 128


def test_paper_scale_resolves_to_the_papers_settings():
    p = params(scale="paper")
    points = grid.grid_points(p)
    assert set(points) == set(grid.grid_points(PARAMS))  # same names at both scales
    main = grid.train_config(p, points[MAIN])
    assert (main.arch.backbone, main.arch.weights, main.arch.resolution) == (
        "ViT-L-14-336",
        "openai",
        224,
    )
    assert main.dataset == "mvtec" and main.epochs == 250
    assert main.arch.taps == (8, 16, 24)
    assert (main.batch_size, main.lr) == (8, 0.001)
    model = main.arch.model
    assert (model.tau, model.theta, model.gamma, model.prompt_tokens) == (0.001, 5, 0.1, 12)
    visa = grid.train_config(p, points["visa-vitl14_336-r224-mlf-cnc-moeT5K2-s0"])
    assert visa.dataset == "visa" and visa.epochs == 200
    assert grid.infer_config(p).map_size == 256
    assert grid.run_dir(p, MAIN) == f"results/runs/paper/{MAIN}"


def test_k_larger_than_t_in_the_main_configuration_is_an_error_naming_the_run():
    bad = params(main__experts=2, main__top_k=3)
    with pytest.raises(ConfigError, match=r"run mvtec-.*moeT2K3.*K must satisfy 1 <= K <= T"):
        grid.check_grid(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"main__backbone": "ViT-L-14-999"}, "main.backbone"),
        ({"scales__smoke__epochs__mvtec": 0}, "scales.smoke.epochs.mvtec"),
        ({"experiments__table2__rows__i": [True, False]}, "experiments.table2.rows.i"),
        ({"model__lambda": 1.0}, "model"),
        ({"seeds": []}, "seeds"),
    ],
)
def test_schema_errors_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_params(params(**change))


def test_a_resolution_the_divisor_does_not_divide_is_an_error():
    bad = params(scales__smoke__resolution_divisor=3)
    with pytest.raises(ConfigError, match=r"resolution_divisor: 3 does not divide"):
        grid.check_grid(bad)


def test_names_are_unique_and_readable():
    names = list(grid.grid_points(PARAMS))
    assert len(set(names)) == len(names)
    assert "mvtec-vitb32-r128-mlf-cnc-moeT5K2-s0" in names
    assert "mvtec-vitl14_336-r224-nomlf-nocnc-nomoe-s0" in names

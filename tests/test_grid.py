"""The experiment grid: shared runs trained once, readable names, scales, bad settings."""

from __future__ import annotations

import copy
from dataclasses import fields

import pytest
import yaml

from cnc import schema
from cnc.code import ROOT
from cnc.errors import SettingsError
from cnc.params import validate_params
from cnc.pipeline import experiments, grid
from cnc.settings import SECTIONS, RunSettings

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
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
    c = experiments.cells(PARAMS)
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
    points = grid.grid_points(PARAMS, "all")
    # 7 ablation rows + None + 21 (T, K) + 16 backbone x resolution + VisA, minus shared.
    assert len(points) == 43
    assert sum(1 for n in points if n.startswith("visa-")) == 1
    two = grid.grid_points(params(seeds=[0, 1]), "all")
    assert len(two) == 86 and {n[-2:] for n in two} == {"s0", "s1"}
    assert all(
        len(c.runs) == 2 for t in experiments.cells(params(seeds=[0, 1])).values() for c in t
    )


def test_table4_cells_are_every_t_and_k_with_k_at_most_t():
    t4 = experiments.cells(PARAMS)["table4"]
    pairs = [(c.row, c.column) for c in t4[1:]]
    assert len(pairs) == 21 and ("T=2", "K=3") not in pairs and ("T=6", "K=6") in pairs
    assert t4[0].row == "None" and t4[0].points[0].experts == 0


def test_smoke_scale_resolves_to_tiny_backbones_on_synthetic_data():
    point = grid.grid_points(PARAMS)[MAIN]
    s = grid.run_settings(PARAMS, point)
    assert (s.backbone.name, s.backbone.weights) == ("cnc-tiny-ViT-L-14-336", "random")
    assert s.backbone.resolution == 112 and s.backbone.taps == (2, 4, 6)
    assert (s.data.dataset, s.data.root) == ("synthetic", "data/synthetic")
    assert s.model.theta == PARAMS["scales"]["smoke"]["model"]["theta"]
    assert s.train.epochs == 3 and s.infer.map_size == 112  # eq. 17: the input size


ALL_DATASETS = ["mvtec", "visa", "mvtec_ad2", "mpdd", "btad", "realiad"]


def test_paper_scale_resolves_to_the_papers_settings():
    p = params(scale="paper", data__prepare=ALL_DATASETS)
    points = grid.grid_points(p)
    assert set(points) == set(grid.grid_points(PARAMS))  # same names at both scales
    main = grid.run_settings(p, points[MAIN])
    b = main.backbone
    assert (b.name, b.weights, b.resolution, b.taps) == ("ViT-L-14-336", "openai", 224, (8, 16, 24))
    assert main.data.dataset == "mvtec" and main.train.epochs == 250
    assert (main.train.batch_size, main.train.lr) == (8, 0.001)
    model = main.model
    assert (model.tau, model.theta, model.gamma, model.prompt_tokens) == (0.001, 5, 0.1, 12)
    assert (model.moe_experts, model.moe_top_k) == (5, 2)
    visa = grid.run_settings(p, points["visa-vitl14_336-r224-mlf-cnc-moeT5K2-s0"])
    assert visa.data.dataset == "visa" and visa.train.epochs == 200
    assert main.infer.map_size == 224  # eq. 17: maps at the input size
    fig4 = points["mvtec-vitb32-r512-mlf-cnc-moeT5K2-s0"]
    assert grid.run_settings(p, fig4).infer.map_size == 512
    fixed = params(scale="paper", infer={"map_size": 256})  # the override stays possible
    assert grid.run_settings(fixed, points[MAIN]).infer.map_size == 256
    assert grid.run_dir(p, MAIN) == f"results/runs/paper/{MAIN}"


def test_benchmarks_run_the_main_configuration_on_every_prepared_dataset():
    """One run per dataset of experiments.benchmarks whose scale dataset is prepared;
    the paper's epochs rule for the datasets it did not use."""
    smoke = experiments.cells(PARAMS, "benchmarks")["benchmarks"]
    assert [c.row for c in smoke] == ALL_DATASETS  # the replicas stand in at the smoke scale
    assert smoke[0].runs == (MAIN,)  # MVTec AD's is the main run, shared
    btad = grid.run_settings(PARAMS, smoke[4].points[0])
    assert (btad.data.dataset, btad.data.root) == ("replica_btad", "data/replica-btad")
    paper = params(scale="paper", data__prepare=["mvtec", "visa", "btad", "realiad"])
    cells = experiments.cells(paper, "benchmarks")["benchmarks"]
    assert [c.row for c in cells] == ["mvtec", "visa", "btad", "realiad"]
    epochs = [grid.run_settings(paper, c.points[0]).train.epochs for c in cells]
    assert epochs == [250, 200, 250, 200]
    assert cells[2].runs == ("btad-vitl14_336-r224-mlf-cnc-moeT5K2-s0",)
    none = params(scale="paper", experiments__benchmarks={"datasets": ["mpdd"]})
    assert experiments.cells(none, "benchmarks")["benchmarks"] == []


def test_a_dataset_without_its_data_entry_is_named():
    p = params(scale="paper", data__prepare=["mvtec", "visa", "btad"])
    del p["data"]["btad"]
    with pytest.raises(SettingsError, match=r"run btad-.*: data\.btad: missing; add it"):
        grid.check_grid(p)


def test_k_larger_than_t_in_the_main_configuration_is_an_error_naming_the_key():
    bad = params(main__experts=2, main__top_k=3)
    with pytest.raises(SettingsError, match=r"^main\.top_k: 3 with main\.experts 2; .*1 <= K <= T"):
        grid.check_grid(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"main__backbone": "ViT-L-14-999"}, "main.backbone"),
        ({"scales__smoke__train__epochs": 0}, "scales.smoke.train.epochs"),
        ({"experiments__table2__rows__i": [True, False]}, "experiments.table2.rows.i"),
        ({"model": {"lambda": 1.0}}, "model.lambda: unknown key"),
        ({"scales__smoke__resolution_divisor": 0}, "scales.smoke.resolution_divisor"),
        ({"seeds": []}, "seeds"),
    ],
)
def test_schema_errors_name_the_key(change, message):
    with pytest.raises(SettingsError, match=message):
        validate_params(params(**change))


def test_a_resolution_the_divisor_does_not_divide_is_an_error():
    bad = params(scales__smoke__resolution_divisor=3)
    with pytest.raises(SettingsError, match=r"resolution_divisor: 3 does not divide"):
        grid.check_grid(bad)


def test_names_are_unique_and_readable():
    names = list(grid.grid_points(PARAMS))
    assert len(set(names)) == len(names)
    assert "mvtec-vitb32-r128-mlf-cnc-moeT5K2-s0" in names
    assert "mvtec-vitl14_336-r224-nomlf-nocnc-nomoe-s0" in names


@pytest.mark.parametrize("section", list(SECTIONS))
def test_the_schema_keys_of_a_section_are_its_settings_fields(section):
    """One home per setting: the schema lists exactly the dataclass's fields."""
    assert schema.properties(section) == [f.name for f in fields(SECTIONS[section])]


def test_params_overrides_are_layered_top_level_then_scale_then_grid():
    p = params(model={"gamma": 0.3, "theta": 7}, train={"lr": 0.01})
    s = grid.run_settings(p, grid.grid_points(p)[MAIN])
    assert s.model.gamma == 0.3 and s.train.lr == 0.01
    assert s.model.theta == 1  # the smoke scale's own override wins over the top level
    assert s.model.mlf and s.model.moe_experts == 5  # decided by the grid point
    defaults = RunSettings.from_dict({"data": {"dataset": "mvtec", "root": "x"}})
    assert s.model.tau == defaults.model.tau  # not given anywhere: the one default


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"model": {"mlf": False}}, "model.mlf"),
        ({"scales__smoke__backbone": {"weights": "random", "name": "x"}}, None),
        ({"model": {"moe_top_k": 3}}, "model.moe_top_k"),
    ],
)
def test_a_setting_the_grid_decides_cannot_be_overridden(change, key):
    bad = params(**change)
    if key is None:  # the schema already refuses a backbone name in an override
        with pytest.raises(SettingsError, match=r"scales\.smoke\.backbone\.name: unknown key"):
            validate_params(bad)
        return
    with pytest.raises(SettingsError, match=rf"{key}: set by the grid"):
        grid.check_grid(bad)


def test_every_run_listed_with_its_folder_and_settings():
    listing = grid.describe_runs(PARAMS)
    variants = len(PARAMS["experiments"]["tableS1"]["variants"])
    benchmarks = 4  # MVTec AD 2, MPDD, BTAD, Real-IAD (MVTec AD's and VisA's are main runs)
    assert len(listing) == 43 + variants + benchmarks
    assert len(grid.describe_runs(PARAMS, "all")) == 43
    entry = listing[MAIN]
    assert entry["dir"] == f"results/runs/smoke/{MAIN}"
    assert RunSettings.from_dict(entry["settings"]) == grid.run_settings(
        PARAMS, grid.grid_points(PARAMS)[MAIN]
    )


def test_table_s1_varies_one_open_choice_at_a_time_outside_the_default_target():
    every, default = grid.grid_points(PARAMS), grid.grid_points(PARAMS, "all")
    variants = sorted(set(grid.grid_points(PARAMS, "choices")) - set(default))
    wanted = len(PARAMS["experiments"]["tableS1"]["variants"])
    assert len(default) == 43 and len(variants) == wanted  # opt-in: not trained by `all`
    assert f"{MAIN[:-3]}-taps_quarters-s0" in variants
    assert f"{MAIN[:-3]}-noise_std_0.05-s0" in variants
    s1 = experiments.cells(PARAMS)["tableS1"]
    assert s1[0].runs == (MAIN,)  # the reference row is the shared main run
    main = grid.run_settings(PARAMS, every[MAIN])
    for cell in s1[1:]:
        changed = grid.run_settings(PARAMS, cell.points[0]).to_dict()
        differs = [
            f"{section}.{key}"
            for section, values in changed.items()
            if isinstance(values, dict)
            for key, value in values.items()
            if main.to_dict()[section][key] != value
        ]
        trained = [k for k in cell.points[0].overrides if not k.startswith("evaluate.")]
        assert differs == trained, (cell.row, differs)  # a scoring variant trains as main


def test_a_tap_scheme_variant_means_the_same_at_both_scales():
    name = f"{MAIN[:-3]}-taps_quarters-s0"
    smoke = grid.run_settings(PARAMS, grid.grid_points(PARAMS)[name])
    paper = params(scale="paper")
    assert smoke.backbone.taps == (2, 3, 5)  # quarters of the stand-in's 6 blocks
    assert grid.run_settings(paper, grid.grid_points(paper)[name]).backbone.taps == (6, 12, 18)


def test_a_variant_cannot_change_what_the_grid_decides():
    bad = params()
    bad["experiments"]["tableS1"]["variants"] = [{"model.mlf": False}]
    with pytest.raises(SettingsError, match=r"a variant's model\.mlf: set by the grid"):
        grid.check_grid(bad)
    bad["experiments"]["tableS1"]["variants"] = [{"gamma": 0.2}]
    with pytest.raises(SettingsError, match=r"experiments\.tableS1\.variants\.0"):
        validate_params(bad)


def test_a_runs_settings_leave_out_what_its_switches_turn_off():
    base = grid.grid_points(PARAMS)
    plain = "mvtec-vitl14_336-r224-nomlf-nocnc-nomoe-s0"
    changed = params(model={"gamma": 0.3, "expert_hidden_ratio": 2.0})
    assert grid.run_settings(changed, base[plain]) == grid.run_settings(PARAMS, base[plain])
    assert grid.run_settings(changed, base[MAIN]) != grid.run_settings(PARAMS, base[MAIN])
    model = grid.run_settings(PARAMS, base[plain]).to_dict()["model"]
    assert "gamma" not in model and "moe_top_k" not in model and "mlf" in model


def test_evaluation_settings_come_from_params_and_the_scale():
    assert grid.evaluate_settings(PARAMS).sigma == 4.0
    assert grid.evaluate_settings(params(evaluate={"sigma": 2})).sigma == 2
    scaled = params(evaluate={"sigma": 2}, scales__smoke__evaluate={"sigma": 1})
    assert grid.evaluate_settings(scaled).sigma == 1

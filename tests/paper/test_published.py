"""spot.paper.published: the papers' published numbers as data. Every record names a registered builder and a
cell that builder produces — checked by building each table from result rows made from the published numbers
themselves (paper preset config) and reading the same number back at the record's row keys and column — values are
in range, the tolerance is the stated formula, and the papers' own cross-references agree where no note says not."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spot import paper
from spot.paper.published import IMAGENET_VAL_IMAGES, PUBLISHED, published_cells, tolerance
from spot.paper.pruning import METHOD_LABELS
from spot.train.recipes import load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config():
    return load_config(ROOT / "config" / "paper.yaml")


@pytest.fixture(scope="module")
def cells():
    return published_cells()


def test_cells_have_the_documented_columns_and_unique_keys(cells):
    assert {"table", "page", "row", "column", "value", "pm", "note"} <= set(cells.columns)
    assert not cells.duplicated(["table", "row_key", "column"]).any()
    assert set(cells.table) <= set(paper.ARTIFACTS)
    assert {"table1", "table2", "table3", "table4", "table5", "table6", "table8", "pruning_table1"} == set(cells.table)
    assert cells.page[cells.paper_table.str.startswith("SPoT")].between(1, 12).all()
    assert (cells.note[~cells.counterpart] != "").all()  # a row without a counterpart says why


def test_accuracies_lie_in_0_100_and_differences_are_points(cells):
    acc = cells[cells.quantity == "accuracy"]
    assert len(acc) > 250 and acc.value.between(0, 100).all()
    assert set(cells.quantity) == {"accuracy", "difference", "rsg", "gmacs"}
    assert cells[cells.quantity == "difference"].value.abs().max() < 100


def test_tolerance_is_the_papers_pm_else_the_binomial_half_width(cells):
    iso = cells[(cells.table == "table5") & (cells.row_key.str.contains('"Isotropic"')) &
                (cells.row_key.str.contains("CLS-IN21k")) & (cells.column == "25 Tok. Acc@1 (%)")].iloc[0]
    assert iso.value == 46.85 and math.isnan(iso.pm)
    assert tolerance(iso) == pytest.approx(100 * 1.96 * math.sqrt(0.4685 * 0.5315 / 50_000))  # 0.437 points
    assert tolerance(iso) == pytest.approx(0.4374, abs=1e-4) and IMAGENET_VAL_IMAGES == 50_000
    knn = cells[(cells.table == "table2") & cells.row_key.str.contains("Sobol") & (cells.column == "k-NN (%)") &
                cells.row_key.str.contains("CLS-IN21k")].iloc[0]
    assert (knn.value, knn.pm, tolerance(knn)) == (46.48, 0.20, 0.20)
    gmacs = cells[cells.quantity == "gmacs"].iloc[0]
    assert tolerance(gmacs) == pytest.approx(0.05)
    assert math.isnan(tolerance(cells[cells.quantity == "rsg"].iloc[0]))


def test_the_module_imports_no_torch(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('torch imported by spot.paper.published')")
    code = f"""
import spot.paper.published
assert len(spot.paper.published.published_cells()) > 300
"""
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# ---- result rows that make each builder print the published numbers ----

def _backbone(config, shown):
    """A display label (CLS-IN21k, DeiT-T) → the backbone's name."""
    names = {b["label"]: k for k, b in config["backbones"].items()}
    return names.get(shown) or shown.lower().replace("-", "_")


def _budget_metric(column):
    """``25 Tok. Acc@1 (%)`` → (25, "acc1")."""
    budget, _, rest = column.split(" ", 2)
    return int(budget), "knn" if rest.startswith("kNN") else "acc1"


def _seeded(base, value, pm):
    """One row, or two seeds whose mean is ``value`` and sample std ``pm``."""
    if math.isnan(pm):
        return [dict(base, seed=None, value=value)]
    d = pm / math.sqrt(2)
    return [dict(base, seed=0, value=value - d), dict(base, seed=1, value=value + d)]


def _evaluation(backbone, variant, method, placement, budget, metric, value, pm=math.nan):
    base = dict(experiment="evaluation", backbone=backbone, variant=variant, method=method, placement=placement,
                positions="placed", budget=budget, metric=metric, n_images=50_000)
    return _seeded(base, value, pm)


def _oracle(experiment, backbone, placement, budget, metric, value, init="isotropic", setting="lr=0.01,steps=10",
            positions="placed"):
    return [dict(experiment=experiment, backbone=backbone, variant="spot", method="spot", placement=placement,
                 init=init, positions=positions, budget=budget, setting=setting, seed=None, metric=metric,
                 value=value, n_images=50_000)]


def _transfer(source, target, metric, value):
    return [dict(experiment="table4", variant="spot", method="spot", placement="spot_on", init="isotropic",
                 setting="lr=0.01,steps=10", source=source, target=target, budget=25, metric=metric, value=value,
                 seed=None, n_images=50_000)]


def _table1(c, config):
    r = c.row
    if r["Method"] == "SPoT":
        return {"oracle": _oracle("table1", _backbone(config, r["Model"]), "isotropic", r["Tokens"], "acc1", c.value,
                                  init="", setting="none")}
    positions = "snapped" if r["Positions"] == "Grid" else "placed"
    return {"oracle": _oracle("table1", _backbone(config, r["Model"]), "spot_on", r["Tokens"], "acc1", c.value,
                              setting=f"lr={r['lr']},steps={r['Steps']}", positions=positions)}


def _table2(c, config):
    backbone, prior = _backbone(config, c.row["Model"].removeprefix("SPoT ")), c.row["Prior"].lower()
    if c.column.startswith("Oracle Δ"):
        return {"oracle": _oracle("table2", backbone, "spot_on", 25, "oracle_delta", c.value, init=prior)}
    metric = "knn" if c.column == "k-NN (%)" else "acc1"
    return {"evaluation": _evaluation(backbone, "spot", "spot", prior, 25, metric, c.value, c.pm)}


def _table3(c, config):
    return {"oracle": _oracle("table3", _backbone(config, c.row["Backbone"]), "spot_on",
                              int(c.column.split()[0]), "rsg", c.value)}


def _table4(c, config):
    metric = {"Original (%)": "original_acc1", "Transfer (%)": "transfer_acc1", "Δ (points)": "transfer_delta"}
    return {"transfer": _transfer(_backbone(config, c.row["Source"]), _backbone(config, c.row["Target"]),
                                  metric[c.column], c.value)}


def _table5(c, config):
    backbone, (budget, metric) = _backbone(config, c.row["Backbone"]), _budget_metric(c.column)
    if c.row["Model"] == "SPoT-ON":
        return {"oracle": _oracle("table5", backbone, "spot_on", budget, metric, c.value)}
    if c.row["Model"] == "ViT":
        return {"evaluation": _evaluation(backbone, "parent", "patchdropout", "grid_random", budget, metric, c.value)}
    return {"evaluation": _evaluation(backbone, "spot", "spot", c.row["Prior"].lower(), budget, metric, c.value)}


TABLE6_CASES = {"Background prior": ("background", ""), "Boundary prior": ("boundary", ""),
                "Ascent (SPoT-ON)": ("spot_on_ascent", "isotropic"),
                "Label obfuscation (SPoT-ON)": ("spot_on_random_label", "isotropic")}


def _table6(c, config):
    placement, init = TABLE6_CASES[c.row["Case"]]
    metric = "acc1" if c.column == "Acc@1 (%)" else "drop_vs_isotropic"
    return {"oracle": _oracle("table6", _backbone(config, c.row["Model"]), placement, 25, metric, c.value,
                              init=init)}


def _table8(c, config):
    if not c.row["Model"].startswith("SPoT "):
        return {}  # ElasticViT: the builder prints ELASTICVIT_TABLE8
    return {"evaluation": _evaluation(_backbone(config, c.row["Model"].removeprefix("SPoT ")), "spot", "spot",
                                      "isotropic", _budget_metric(c.column)[0], "acc1", c.value)}


def _pruning_table1(c, config):
    if c.column == "Δ (points)":
        return {}  # the builder computes it
    setting = {v: k for k, v in METHOD_LABELS.items()}[c.row["Method"]]
    dense = setting == "vit"
    row = dict(backbone=_backbone(config, c.row["Model"]), variant="parent", method=setting,
               setting=None if dense else setting, keep_ratio=1.0 if dense else 0.7,
               trained_keep_ratio=None if dense else 0.7, budget=196, r=None,
               metric="acc1" if c.column == "Acc@1 (%)" else "gflops", value=c.value, n_images=50_000)
    return {"pruning": [row]}


RESULTS = {"table1": _table1, "table2": _table2, "table3": _table3, "table4": _table4, "table5": _table5,
           "table6": _table6, "table8": _table8, "pruning_table1": _pruning_table1}
EMPTY_TRANSFER = ["experiment", "placement", "source", "target", "budget", "metric", "value"]


def _inputs(tmp_path, name, found, config):
    """{kind: [csv]} of the rows that make builder ``name`` print the cells ``found``."""
    rows = {}
    for c in found.itertuples():
        for kind, new in RESULTS[name](c, config).items():
            rows.setdefault(kind, []).extend(new)
    out = {}
    for kind in paper.ARTIFACTS[name].reads:
        path = tmp_path / f"{name}_{kind}.csv"
        frame = pd.DataFrame(rows[kind]) if kind in rows else pd.DataFrame(columns=EMPTY_TRANSFER)
        frame.to_csv(path, index=False)
        if kind in rows or kind == "transfer":
            out[kind] = [path]
    return out


def _read_back(built, row, column):
    """The built table's cell at ``row`` (its keys) and ``column`` as (value, ±), NaN ± where it prints none."""
    match = built[np.logical_and.reduce([built[k] == v for k, v in row.items()])]
    assert len(match) <= 1, (row, match)
    if not len(match):
        return None
    cell = match[column].iloc[0]
    if isinstance(cell, str):  # "45.23 ± 0.10"
        mean, _, pm = cell.partition(" ± ")
        return float(mean), float(pm) if pm else math.nan
    return float(cell), math.nan


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_every_published_number_is_a_cell_its_builder_produces(tmp_path, config, cells, name):
    own = cells[cells.table == name]
    built = paper.build(name, _inputs(tmp_path, name, own[own.counterpart], config), config)
    assert set(own.column) <= set(built.columns), set(own.column) - set(built.columns)
    for c in own.itertuples():
        back = _read_back(built, c.row, c.column)
        if not c.counterpart:
            assert back is None, f"{c.paper_row}: the project has a row {c.row}, but the record says it has none"
            continue
        assert back is not None, f"{c.paper_row} → {c.row}: no such row in {name}"
        assert back[0] == pytest.approx(c.value, abs=1e-6), (c.paper_row, c.column)
        if not math.isnan(c.pm):
            assert back[1] == pytest.approx(c.pm, abs=1e-6), (c.paper_row, c.column)


# ---- the papers' own cross-references (a typo in transcription would break one) ----

def _value(cells, table, column, **row):
    f = cells[(cells.table == table) & (cells.column == column)]
    f = f[f.row.map(lambda r: all(r.get(k) == v for k, v in row.items()))]
    assert len(f) == 1, (table, column, row)
    return f.iloc[0]


def test_table4_delta_is_transfer_minus_original_and_original_is_table5_isotropic(cells):
    for c in cells[(cells.table == "table4") & (cells.column == "Δ (points)")].itertuples():
        original = _value(cells, "table4", "Original (%)", **c.row).value
        transfer = _value(cells, "table4", "Transfer (%)", **c.row).value
        assert transfer - original == pytest.approx(c.value, abs=1e-9)
        iso = _value(cells, "table5", "25 Tok. Acc@1 (%)", Backbone=c.row["Target"], Prior="Isotropic").value
        assert original == iso


def test_table6_accuracy_plus_drop_is_isotropic_except_where_noted(cells):
    flagged = set()
    for c in cells[(cells.table == "table6") & (cells.column == "Acc@1 (%)")].itertuples():
        drop = _value(cells, "table6", "Drop vs Isotropic (points)", **c.row)
        iso = _value(cells, "table5", "25 Tok. Acc@1 (%)", Backbone=c.row["Model"], Prior="Isotropic").value
        if abs(c.value + drop.value - iso) > 0.015:  # printed to 2 decimals each
            assert "inconsistent in the paper" in drop.note, c.row
            flagged.add((c.row["Model"], c.row["Case"]))
    assert flagged == {("CLS-IN21k", "Background prior"), ("CLS-IN1k", "Ascent (SPoT-ON)"),
                       ("CLS-IN1k", "Label obfuscation (SPoT-ON)")}


def test_table2_agrees_with_table5_except_where_noted(cells):
    mismatched = []
    for c in cells[(cells.table == "table2") & ~cells.column.str.startswith("Oracle")].itertuples():
        backbone = c.row["Model"].removeprefix("SPoT ")
        column = "25 Tok. kNN (%)" if c.column == "k-NN (%)" else "25 Tok. Acc@1 (%)"
        t5 = _value(cells, "table5", column, Backbone=backbone, Model="SPoT", Prior=c.row["Prior"])
        if t5.value != c.value:
            assert "Table 5 prints" in c.note and "Table 2 prints" in t5.note
            mismatched.append((backbone, c.row["Prior"], c.column))
    assert mismatched == [("CLS-IN21k", "Salient", "k-NN (%)")]
    for backbone in ("CLS-IN21k", "MAE-IN1k"):  # Isotropic + Oracle Δ = Table 5's SPoT-ON (the 1e-2 × 10 setting)
        iso = _value(cells, "table2", "Acc@1 (%)", Model=f"SPoT {backbone}", Prior="Isotropic").value
        delta = _value(cells, "table2", "Oracle Δ (points), lr 0.01 × 10 steps", Model=f"SPoT {backbone}",
                       Prior="Isotropic").value
        on = _value(cells, "table5", "25 Tok. Acc@1 (%)", Backbone=backbone, Model="SPoT-ON").value
        assert iso + delta == pytest.approx(on, abs=1e-9)


def test_table8_elasticvit_row_is_the_one_the_builder_prints(cells):
    from spot.paper import ELASTICVIT_TABLE8

    elastic = cells[(cells.table == "table8") & cells.row_key.str.contains("ElasticViT")]
    assert {int(c.split()[0]): v for c, v in zip(elastic.column, elastic.value)} == {
        b: v for b, v in ELASTICVIT_TABLE8.items()}


def test_every_paper_row_is_kept_and_rows_without_counterpart_are_seed_003_methods(cells):
    assert len(PUBLISHED) == 5 + 12 + 3 + 6 + 24 + 12 + 2 + 16 + 1
    none = cells[~cells.counterpart].row.map(lambda r: r["Method"])
    assert set(none) == {"A-ViT", "Zero-TPrune", "IA-RED²", "RL4EViT", "METR", "SPOT-AD (2.8 GFLOPS row)"}
    assert json.loads(cells.row_key.iloc[0]) == cells.row.iloc[0]

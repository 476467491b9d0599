"""spot.paper (tables from result rows) and spot.reproduce.audit (the provenance chain) on small hand-made result files."""
import json
from pathlib import Path

import pandas as pd
import pytest

from spot import paper
from spot.reproduce.audit import audit, run_from_args
from spot.provenance import sha256_file
from spot.train.recipes import load_config
from spot.results import input_checksums, write_table


@pytest.fixture
def config():
    return load_config("config.yaml")


def _eval_rows():
    base = dict(experiment="evaluation", backbone="cls_in1k", variant="spot", model_format="spot_vit", method="spot",
                positions="placed", budget=4, budget_set="main", n_images=100)
    rows = []
    for seed, acc, knn in ((0, 40.0, 44.0), (1, 42.0, 46.0)):  # a stochastic prior: two seeds
        for metric, value in (("acc1", acc), ("knn", knn)):
            rows.append(dict(base, placement="uniform", seed=seed, metric=metric, value=value))
    for metric, value in (("acc1", 50.0), ("knn", 51.0)):
        rows.append(dict(base, placement="isotropic", seed=None, metric=metric, value=value))
        rows.append(dict(base, variant="parent", model_format="timm_vit", method="patchdropout",
                         placement="grid_random", seed=0, metric=metric, value=value - 20))
    return rows


def _oracle_rows():
    base = dict(backbone="cls_in1k", variant="spot", method="spot", positions="placed", n_images=100, seed=None)
    rows = [dict(base, experiment="table2", placement="spot_on", init=p, budget=4, setting=st, metric="oracle_delta",
                 value=v + extra)
            for st, extra in (("lr=0.01,steps=10", 20.0), ("lr=0.003,steps=5", 0.0))
            for p, v in (("uniform", 7.0), ("isotropic", 9.0))]
    for b, (acc, knn) in ((4, (80.0, 70.0)), (9, (90.0, 85.0))):
        for metric, value in (("acc1", acc), ("knn", knn)):
            rows.append(dict(base, experiment="table5", placement="spot_on", init="isotropic", budget=b,
                             setting="lr=0.01,steps=10", metric=metric, value=value))
    for b in (4, 9):
        for metric, value in (("rsg", 12.0 + b), ("rsg_median", 1.0), ("rsg_ratio_of_means", 3.0),
                              ("rsg_zero_init", 40.0), ("saliency_init", 0.3)):
            rows.append(dict(base, experiment="table3", placement="spot_on", init="isotropic", budget=b,
                             setting="lr=0.01,steps=10", metric=metric, value=value))
    return rows


def _transfer_rows():
    """Table 4 at 4 tokens and the cross-model controls at 4 and 9, from mae_in1k into cls_in1k and back."""
    base = dict(variant="spot", method="spot", init="isotropic", setting="lr=0.01,steps=10", n_images=100, seed=None)
    rows = []
    for b in (4, 9):
        experiment = "table4" if b == 4 else "controls"
        for src, tgt in (("mae_in1k", "cls_in1k"), ("cls_in1k", "mae_in1k")):
            for m, v in (("original_acc1", 30.0 + b), ("transfer_acc1", 60.0 + b), ("transfer_delta", 30.0)):
                rows.append(dict(base, experiment=experiment, placement="spot_on", source=src, target=tgt,
                                 budget=b, metric=m, value=v))
            rows.append(dict(base, experiment="controls", placement="spot_on_random_target", source=src, target=tgt,
                             budget=b, metric="random_target_rate", value=20.0 + b, seed=0))
    return rows


def _control_rows():
    base = dict(experiment="controls", backbone="cls_in1k", variant="spot", method="spot", positions="placed",
                n_images=100, init="isotropic", setting="lr=0.01,steps=10", seed=None)
    rows = []
    for b in (4, 9):
        for placement, metric, value in (("isotropic", "acc1", 50.0), ("spot_on", "acc1", 80.0),
                                         ("spot_on_label_free", "acc1", 55.0), ("spot_on", "blank_acc1", 70.0),
                                         ("isotropic", "blank_acc1", 10.0),
                                         ("spot_on_random_target", "target_rate", 90.0),
                                         ("spot_on_random_target", "target_rate_init", 11.0)):
            rows.append(dict(base, placement=placement, budget=b, metric=metric, value=value + b,
                             init="" if placement == "isotropic" else "isotropic",
                             setting="none" if placement == "isotropic" else base["setting"]))
    return rows


def _write(tmp_path, **frames):
    """{kind: [path]} of hand-made result rows written as CSV."""
    out = {}
    for kind, rows in frames.items():
        path = tmp_path / f"{kind}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        out[kind] = [path]
    return out


def test_controls_table_shows_every_control_beside_spot_on(tmp_path, config):
    inputs = _write(tmp_path, oracle=_oracle_rows() + _control_rows(), transfer=_transfer_rows())
    t = paper.build("oracle_controls", inputs, config)
    assert [c for c in t.columns if "95% CI" not in c] == ["Backbone", "Measure", "4 Tok.", "9 Tok."]
    m = t.set_index("Measure")
    assert m.loc["SPoT (Isotropic) Acc@1 (%)", "9 Tok."] == 59.0 and m.loc["SPoT-ON Acc@1 (%)", "4 Tok."] == 84.0
    assert m.loc["SPoT-ON positions from MAE-IN1k Acc@1 (%)", "9 Tok."] == 69.0  # transfer into CLS-IN1k
    assert m.loc["label-free search (min. entropy) Acc@1 (%)", "4 Tok."] == 59.0
    assert m.loc["SPoT-ON on blank images Acc@1 (%)", "9 Tok."] == 79.0
    assert m.loc["SPoT-ON towards a random wrong label: label output (%)", "4 Tok."] == 94.0
    assert m.loc["the random wrong label output at the start (%)", "4 Tok."] == 15.0
    assert m.loc["random-wrong-label positions from MAE-IN1k: label output (%)", "9 Tok."] == 29.0
    assert set(t.Backbone) == {"CLS-IN1k"}  # the rows *into* cls_in1k only
    # Table 1 shows them at the sparse budget below SPoT-ON; Table 4 keeps its own rows (4 tokens) only
    t1 = paper.build("table1", _write(tmp_path, oracle=_oracle_rows() + _control_rows() + [
        dict(experiment="table1", backbone="cls_in1k", variant="spot", method="spot", placement="isotropic", init="",
             positions="placed", budget=4, setting="none", seed=None, metric="acc1", value=54.0, n_images=100)],
        transfer=_transfer_rows()), config).set_index("Method")
    assert t1.loc["Control: SPoT-ON positions from MAE-IN1k Acc@1 (%)", "Acc@1 (%)"] == 64.0
    assert t1.loc["Control: SPoT-ON on blank images Acc@1 (%)", "Steps"] == "10"
    t4 = paper.build("table4", _write(tmp_path, transfer=_transfer_rows()), config)
    assert len(t4) == 2 and set(t4["Original (%)"]) == {34.0}


def test_table2_reports_mean_and_std_over_seeds_and_the_oracle_gain_of_every_setting(tmp_path, config):
    e, o = tmp_path / "evaluation.csv", tmp_path / "oracle.csv"
    pd.DataFrame(_eval_rows()).to_csv(e, index=False)
    pd.DataFrame(_oracle_rows()).to_csv(o, index=False)
    t = paper.build("table2", {"evaluation": [e], "oracle": [o]}, config).set_index("Prior")
    assert t.loc["Uniform", "Acc@1 (%)"] == "41.00 ± 1.41" and t.loc["Uniform", "k-NN (%)"] == "45.00 ± 1.41"
    stated, implied = "Oracle Δ (points), lr 0.003 × 5 steps (§4.2)", "Oracle Δ (points), lr 0.01 × 10 steps"
    assert [c for c in t.columns if "95% CI" not in c][-2:] == [stated, implied]  # §4.2's stated setting first
    assert t.loc["Isotropic", "Acc@1 (%)"] == "50.00" and t.loc["Isotropic", stated] == 9.0
    assert t.loc["Isotropic", implied] == 29.0
    assert set(t["Model"]) == {"SPoT CLS-IN1k"}


def test_table3_reports_every_rsg_statistic_with_its_unit(tmp_path, config):
    o = tmp_path / "oracle.csv"
    pd.DataFrame(_oracle_rows()).to_csv(o, index=False)
    t = paper.build("table3", {"oracle": [o]}, config)
    assert [c for c in t.columns if "95% CI" not in c] == ["Backbone", "Statistic", "4 Tok.", "9 Tok."]
    stats = t.set_index("Statistic")
    assert stats.loc["RSG (%), mean over trajectories (Eq. 5)", "9 Tok."] == 21.0
    assert stats.loc["trajectories skipped, initial score 0 (%)", "4 Tok."] == 40.0
    assert len(t) == 4 and "saliency" not in " ".join(t.Statistic).replace("initial score", "")


def _figure5_inputs(tmp_path, eval_rows, selection_rows):
    """Figure 5's inputs: the given evaluation (test) and prior_selection (validation) rows, the oracle, transfer
    and throughput (the fastest batch per budget: 16 000 / b images/s) of the fixtures."""
    tp = [dict(experiment="throughput", backbone=bb, variant=v, method=m, budget=b, batch_size=bs, metric=metric,
               value=1000.0 * bs / b * (1 if metric == "images_per_s" else 1e-3))
          for bb in ("cls_in1k", "mae_in1k") for v, m in (("spot", "spot"), ("parent", "patchdropout"))
          for b in (4, 9) for bs in (16, 64) for metric in ("images_per_s", "images_per_s_max")]
    oracle = _oracle_rows() + [dict(r, backbone="mae_in1k", value=r["value"] - 5) for r in _oracle_rows()]
    transfer = [dict(r, value=r["value"] - 10) if (r["target"], r["metric"]) == ("mae_in1k", "transfer_acc1") else r
                for r in _transfer_rows()]  # into MAE-IN1k 10 points below the transfer into CLS-IN1k
    return _write(tmp_path, evaluation=eval_rows, prior_selection=selection_rows, oracle=oracle, transfer=transfer,
                  throughput=tp)


def _val_rows(values):
    """prior_selection rows (one seed) of SPoT: {(backbone, placement): (Acc@1 at 4 tokens, at 9)}."""
    base = dict(experiment="evaluation", variant="spot", model_format="spot_vit", method="spot", positions="placed",
                budget_set="main", n_images=100, metric="acc1", seed=0)
    return [dict(base, backbone=bb, placement=p, budget=b, value=v) for (bb, p), vs in values.items()
            for b, v in zip((4, 9), vs)]


def _fig5_config(config, **figure5):
    return {**config, "evaluation": {**config["evaluation"], "budgets": [4, 9]}, "figures": {"figure5": figure5}}


def test_figure5_draws_one_panel_with_gap_and_ceiling(tmp_path, config):
    eval_rows = [dict(r, budget=b, value=r["value"] + b) for r in _eval_rows() for b in (4, 9)]
    val = _val_rows({("cls_in1k", "uniform"): (30.0, 35.0), ("cls_in1k", "isotropic"): (40.0, 45.0)})
    inputs = _figure5_inputs(tmp_path, eval_rows, val)
    config = _fig5_config(config, ceiling={"from": 96.0, "source": "test"})
    fig = paper.build("figure5", inputs, config)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:4] == ["ViT CLS-IN1k + PatchDropout", "SPoT (backbone and prior chosen on val, reported on test)",
                          "SPoT-ON (SPoT's backbone)", "SPoT-ON positions from another model (SPoT's backbone)"]
    assert "gap" in labels and "gap, cross-model" in labels and "ceiling (test)" in labels
    assert list(ax.lines[3].get_ydata()) == [64.0, 69.0]  # the cross-model oracle into CLS-IN1k
    spot = ax.lines[1]
    assert list(spot.get_xdata()) == [16000.0, 64000 / 9]  # the fastest batch size per budget
    assert list(spot.get_ydata()) == [54.0, 59.0]  # the prior chosen on validation (Isotropic), at its test Acc@1
    assert "prior_selection" in paper.artifact("figure5").reads
    assert len(paper.build("figure5b", inputs, config).axes) == 1  # one panel per backbone (one here)


def test_figure5_chooses_backbone_and_prior_on_validation_and_reports_test(tmp_path, config):
    """On test, MAE-IN1k Salient is best at both budgets; on validation, CLS-IN1k Uniform at 4 tokens and MAE-IN1k
    Isotropic at 9 (a Salient setting the evaluation never measured is better still, and out of the choice): the
    figure follows validation, and SPoT-ON and the cross-model line take those backbones."""
    base = dict(experiment="evaluation", variant="spot", model_format="spot_vit", method="spot", positions="placed",
                budget_set="main", n_images=100, metric="acc1")
    test = {("cls_in1k", "uniform"): (40.0, 42.0), ("cls_in1k", "isotropic"): (50.0, 50.0),
            ("mae_in1k", "isotropic"): (45.0, 45.0), ("mae_in1k", "salient"): (70.0, 70.0)}
    eval_rows = [dict(base, backbone=bb, placement=p, budget=b, seed=s, value=v + b)
                 for (bb, p), vs in test.items() for s, v in enumerate(vs) for b in (4, 9)]
    val = _val_rows({("cls_in1k", "uniform"): (60.0, 40.0), ("cls_in1k", "isotropic"): (50.0, 50.0),
                     ("mae_in1k", "isotropic"): (52.0, 70.0), ("mae_in1k", "salient"): (20.0, 20.0),
                     ("mae_in1k", "salient(blur=0.05)"): (90.0, 90.0)})  # a candidate the evaluation never measured
    inputs = _figure5_inputs(tmp_path, eval_rows, val)
    config = _fig5_config(config)
    choice = paper.figures.spot_choice(inputs, config)
    assert choice == {4: ("cls_in1k", "uniform", 45.0), 9: ("mae_in1k", "isotropic", 54.0)}
    (ax,) = paper.build("figure5", inputs, config).axes
    lines = {line.get_label(): line for line in ax.lines}
    spot = lines["SPoT (backbone and prior chosen on val, reported on test)"]  # Salient not chosen: not mentioned
    assert list(spot.get_ydata()) == [45.0, 54.0]  # test Acc@1 of the validation choice, mean over seeds
    assert list(lines["SPoT-ON (SPoT's backbone)"].get_ydata()) == [80.0, 85.0]  # CLS-IN1k at 4, MAE-IN1k at 9
    assert list(lines["SPoT-ON positions from another model (SPoT's backbone)"].get_ydata()) == [64.0, 59.0]
    # chosen on validation, Salient is named with what it reads (the embedded preset: the article's true mask)
    val = [dict(r, value=r["value"] + 100) if r["placement"] == "salient" else r for r in val]
    inputs = _figure5_inputs(tmp_path, eval_rows, val)
    assert paper.figures.spot_choice(inputs, config)[4] == ("mae_in1k", "salient", 74.0)
    (ax,) = paper.build("figure5", inputs, config).axes
    assert "SPoT (backbone and prior chosen on val, reported on test; Salient reads the article mask)" in \
        [line.get_label() for line in ax.lines]


@pytest.mark.parametrize("preset", ["config.yaml", "config/paper.yaml", "config/smoke.yaml",
                                    "config/embedded_long.yaml"])
def test_prior_selection_candidates_cover_the_evaluation_priors(preset):
    """Figure 5 chooses among the evaluation's priors on prior_selection's results: each is a candidate, at the
    evaluation's settings (the same placement label)."""
    from spot.core.placement import make_placement

    c = load_config(preset)
    candidates = {make_placement(p).label for p in c["prior_selection"]["candidates"]}
    assert {make_placement(p).label for p in c["evaluation"]["priors"]} <= candidates


def test_table5_has_the_patchdropout_and_prior_rows(tmp_path, config):
    config = {**config, "evaluation": {**config["evaluation"], "budgets": [4]}}
    e, o = tmp_path / "evaluation.csv", tmp_path / "oracle.csv"
    pd.DataFrame(_eval_rows()).to_csv(e, index=False)
    pd.DataFrame(_oracle_rows()).to_csv(o, index=False)
    t = paper.build("table5", {"evaluation": [e], "oracle": [o], **_write(tmp_path, transfer=_transfer_rows())},
                    config)
    row = t[t.Prior == "Patch grid (PatchDropout)"].iloc[0]
    assert row["4 Tok. Acc@1 (%)"] == 30.0 and row["4 Tok. kNN (%)"] == 31.0
    assert t[t.Prior == "Uniform"].iloc[0]["4 Tok. Acc@1 (%)"] == 41.0
    on = t[t.Model == "SPoT-ON"].iloc[0]
    assert on["4 Tok. Acc@1 (%)"] == 80.0 and on["4 Tok. kNN (%)"] == 70.0 and "ours" in on["Prior"]
    cross = t[t.Prior == "SPoT-ON positions from MAE-IN1k Acc@1 (%)"].iloc[0]
    assert cross["Model"] == "SPoT-ON control (ours)" and cross["4 Tok. Acc@1 (%)"] == 64.0
    assert t[t.Model == "SPoT"].Oracle.eq("").all()  # no ✓ on a prior (the paper's Salient ✓: see the caption)


def test_table4_transfer_rows(tmp_path, config):
    t = tmp_path / "transfer.csv"
    rows = [dict(experiment="table4", source="cls_in1k", target="mae_in1k", variant="spot", method="spot",
                 placement="spot_on", init="isotropic", budget=4, setting="s", metric=m, value=v, n_images=10,
                 seed=None)
            for m, v in (("original_acc1", 30.0), ("transfer_acc1", 36.0), ("transfer_delta", 6.0))]
    pd.DataFrame(rows).to_csv(t, index=False)
    table = paper.build("table4", {"transfer": [t]}, config)
    shown = [c for c in table.columns if "95% CI" not in c]
    assert table.iloc[0][shown].to_dict() == {"Source": "CLS-IN1k", "Target": "MAE-IN1k", "Original (%)": 30.0,
                                              "Transfer (%)": 36.0, "Δ (points)": 6.0}
    assert table.filter(like="95% CI").isna().all().all()  # rows without outcomes: no interval is made up


def test_table4_delta_interval_is_paired_over_the_same_images(tmp_path, config):
    """Δ's interval comes from each image's transfer − original outcome: images right (or wrong) both times cancel,
    so it is narrower than the two Wilson intervals combined as if independent."""
    import numpy as np

    from spot.stats import outcome_columns, paired_difference, wilson

    rng = np.random.default_rng(2)
    original = rng.random(400) < 0.4
    moved = original | (rng.random(400) < 0.1)  # transfer keeps every right image and gains some
    base = dict(experiment="table4", source="cls_in1k", target="mae_in1k", variant="spot", method="spot",
                placement="spot_on", init="isotropic", budget=4, setting="s", seed=None)
    rows = [dict(base, metric="original_acc1", **outcome_columns(original)),
            dict(base, metric="transfer_acc1", **outcome_columns(moved)),
            dict(base, metric="transfer_delta", value=100 * (moved.mean() - original.mean()), n_images=400)]
    t = tmp_path / "transfer.csv"
    pd.DataFrame(rows).to_csv(t, index=False)
    row = paper.build("table4", {"transfer": [t]}, config).iloc[0]
    d = paired_difference(moved, original)
    assert (row["Δ (points) 95% CI low"], row["Δ (points) 95% CI high"]) == pytest.approx((d.low, d.high))
    assert row["Original (%) 95% CI low"] == pytest.approx(100 * wilson(int(original.sum()), 400)[0])
    widths = [row[f"{c} 95% CI high"] - row[f"{c} 95% CI low"] for c in ("Original (%)", "Transfer (%)")]
    assert d.high - d.low < np.hypot(*widths)


def test_written_tables_and_unknown_table(tmp_path, config):
    frame = paper.build("table7", {}, config)
    paths = paper.write("table7", frame, tmp_path, {})
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex", ".json"]
    assert "\\begin{tabular}" in paths[2].read_text() and "| config" in paths[1].read_text()
    sampler = frame.set_index("config").loc["sampler"]  # the embedded retrofits rehearse the full grid
    assert sampler["CLS-IN1k"] == "isotropic (m ∈ [4, 36], jitter 0.5; full grid 50% of batches)"
    with pytest.raises(ValueError, match="no table or figure named 'table9'"):
        paper.build("table9", {}, config)
    with pytest.raises(ValueError, match="no evaluation result table"):
        paper.build("table2", {}, config)


def _chain(tmp_path):
    """manifest → checkpoint (+ record naming its parent) → result table (+ sidecar) → paper table (+ sidecar)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.npz").write_bytes(b"images")
    (data / "manifest.json").write_text(json.dumps({"splits": {"test": {"file": "test.npz",
                                                                        "sha256": sha256_file(data / "test.npz")}}}))
    parent = tmp_path / "parent.safetensors"
    parent.write_bytes(b"parent weights")
    (tmp_path / "parent.json").write_text(json.dumps({"name": "cls_in1k", "source": "https://example.org/w"}))
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"weights")
    (tmp_path / "model.json").write_text(json.dumps(
        {"recipe": {"name": "retrofit_cls"}, "provenance": {"inputs": input_checksums({"parent": parent}, data)}}))
    result = write_table([{"model": "m", "value": 1.0}], tmp_path / "evaluation.csv", config={},
                         inputs=input_checksums({"m": ckpt}, data))
    table = pd.DataFrame({"Prior": ["Isotropic"], "Acc@1": [1.0]})
    out = paper.write_table_files(table, tmp_path / "figs", "table5", inputs=[result])
    return out[0], parent, data


def test_audit_follows_the_chain_and_flags_a_changed_file(tmp_path, capsys):
    table, parent, data = _chain(tmp_path)
    links, value = audit(table, row=0, column="Acc@1")
    assert value == "1.0" and not [link for link in links if link.broken]
    kinds = [link.kind for link in links]
    assert {"output file", "result table", "checkpoint", "checkpoint record", "data manifest", "data (test)"} <= \
        set(kinds)
    assert str(parent) in {link.path for link in links}  # followed through the checkpoint's record to its parent
    status = {Path(link.path).name: link.status for link in links}
    assert status["model.json"] == status["parent.json"] == "ok"  # each record against the link pointing to it
    assert status["table5.provenance.json"] == "root" and "unchecked" not in status.values()

    class Args:
        path, row, column, strict = str(table), None, None, True

    assert run_from_args(Args) == 0
    capsys.readouterr()
    parent.write_bytes(b"tampered")
    assert run_from_args(Args) == 1
    out = capsys.readouterr().out
    assert f"CHANGED checkpoint: {parent}" in out and "the chain is broken" in out
    parent.write_bytes(b"parent weights")
    record = tmp_path / "parent.json"  # the record's origin edited: caught by the checksum of the child's link
    record.write_text(record.read_text().replace("example.org", "example.com"))
    assert run_from_args(Args) == 1 and f"CHANGED checkpoint record: {record}" in capsys.readouterr().out
    (data / "test.npz").unlink()
    links, _ = audit(table)
    assert any(link.status == "missing" and link.path.endswith("test.npz") for link in links)


def _pruning_rows():
    base = dict(experiment="pruning", backbone="cls_in1k", n_images=100, split="test")
    rows = []

    def add(metric_values, **cols):
        for metric, value in metric_values.items():
            rows.append(dict(base, **cols, metric=metric, value=value))

    add({"acc1": 80.0, "gflops": 1.0}, variant="parent", method="vit", setting="", placement="grid", budget=36,
        keep_ratio=1.0)
    for setting, method, accs, flops in (("spot_ad", "spot_ad", (75.0, 78.0), (0.60, 0.75)),
                                        ("evit", "evit", (74.0, 77.0), (0.62, 0.76)),
                                        ("heuristic", "heuristic", (73.0, 76.0), (0.58, 0.72))):
        for rho, acc, g in zip((0.5, 0.7), accs, flops):
            add({"acc1": acc, "gflops": g}, variant="parent", method=method, setting=setting, placement="grid",
                budget=36, keep_ratio=rho, trained_keep_ratio=0.7)
    for rho, acc, g, r in ((0.5, 70.0, 0.6, 4), (0.7, 79.0, 0.74, 2)):
        add({"acc1": acc, "gflops": g}, variant="parent", method="tome", setting="tome", placement="grid", budget=36,
            keep_ratio=rho, r=r)
    for m, g, iso, uni in ((20, 0.61, 70.0, (71.0, 73.0)), (26, 0.74, 79.5, (77.0, 78.0))):
        add({"acc1": iso, "gflops": g}, variant="spot", method="spot", setting="", placement="isotropic", budget=m)
        for seed, acc in enumerate(uni):
            add({"acc1": acc, "gflops": g}, variant="spot", method="spot", setting="", placement="uniform", budget=m,
                seed=seed)
        add({"acc1": iso - 10, "gflops": g}, variant="parent", method="patchdropout", setting="",
            placement="grid_random", budget=m, seed=0)
        add({"acc1": iso - 5, "gflops": g}, variant="grid_control", method="spot", setting="",
            placement="grid_random", budget=m, seed=0)
    return rows


def _pruning_inputs(tmp_path):
    write_table(_pruning_rows(), tmp_path / "pruning.csv", config={})
    tp = [dict(experiment="throughput", backbone="cls_in1k", variant="parent", method="vit", budget=36,
               metric="images_per_s", value=1000.0, batch_size=256),
          dict(experiment="throughput", backbone="cls_in1k", variant="parent", method="spot_ad", setting="spot_ad",
               budget=36, keep_ratio=0.7, metric="images_per_s", value=1250.0, batch_size=256)]
    write_table(tp, tmp_path / "throughput.csv", config={})
    return {"pruning": [tmp_path / "pruning.csv"], "throughput": [tmp_path / "throughput.csv"]}


def test_pruning_table1_reports_changes_against_the_dense_model(tmp_path, config):
    t = paper.build("pruning_table1", _pruning_inputs(tmp_path), config).set_index("Method")
    assert list(t.index[:2]) == ["Baseline (dense)", "SPOT-AD"] and "ToMe (r = 2, training-free)" in t.index
    assert t.loc["SPOT-AD", "Acc@1 (%)"] == 78.0 and t.loc["SPOT-AD", "Δ (points)"] == pytest.approx(-2.0)
    assert t.loc["SPOT-AD", "GFLOPs Δ (%)"] == pytest.approx(-25.0)
    assert t.loc["SPOT-AD", "Speed-up (×)"] == pytest.approx(1.25)
    assert pd.isna(t.loc["EViT", "Throughput (images/s)"])  # not timed: shown as missing, never invented


def test_pruning_ablations_price_the_predictor_against_the_heuristic(tmp_path, config):
    t = paper.build("pruning_ablations", _pruning_inputs(tmp_path), config).set_index("Setting")
    # every value is below 1 GFLOP: the table says MFLOPs
    assert t.loc["spot_ad", "Predictor MFLOPs"] == pytest.approx(1000 * (0.75 - 0.72))
    assert t.loc["spot_ad", "Predictor share (%)"] == pytest.approx(100 * 0.03 / 0.75)
    assert t.loc["heuristic", "Predictor MFLOPs"] == 0.0 and "evit" not in t.index


def test_pruning_tables_report_each_fine_tune_at_its_own_keep_ratio(tmp_path, config):
    rows = _pruning_rows()
    base = dict(experiment="pruning", backbone="cls_in1k", n_images=100, split="test", variant="parent",
                method="spot_ad", setting="spot_ad_r05", placement="grid", budget=36, trained_keep_ratio=0.5)
    for rho, acc, g in ((0.5, 77.5, 0.60), (0.7, 70.0, 0.75)):  # trained at 0.5: its row is the ρ = 0.5 one
        rows += [dict(base, keep_ratio=rho, metric="acc1", value=acc), dict(base, keep_ratio=rho, metric="gflops",
                                                                              value=g)]
    write_table(rows, tmp_path / "pruning.csv", config={})
    config = {**config, "pruning": {**config["pruning"], "models": {**config["pruning"]["models"],
                                                                     "spot_ad_r05": "prune_spot_ad"}}}
    inputs = {"pruning": [tmp_path / "pruning.csv"]}
    t1 = paper.build("pruning_table1", inputs, config).set_index("Method")
    assert t1.loc["SPOT-AD [spot_ad_r05]", "ρ"] == 0.5 and t1.loc["SPOT-AD [spot_ad_r05]", "Acc@1 (%)"] == 77.5
    assert t1.loc["SPOT-AD", "ρ"] == 0.7 and t1.loc["SPOT-AD", "Acc@1 (%)"] == 78.0  # the others: still 0.7
    assert t1.loc["ToMe (r = 2, training-free)", "ρ"] == 0.7
    ablations = paper.build("pruning_ablations", inputs, config).set_index("Setting")
    assert ablations.loc["spot_ad_r05", "ρ"] == 0.5  # priced against the heuristic at the same ρ (0.58)
    assert ablations.loc["spot_ad_r05", "Predictor MFLOPs"] == pytest.approx(1000 * (0.60 - 0.58))


def test_sampling_vs_pruning_matches_cost_points_and_names_the_winner(tmp_path, config):
    t = paper.build("sampling_vs_pruning", _pruning_inputs(tmp_path), config).set_index("ρ")
    assert list(t["m*"]) == [20, 26]  # the budgets whose GFLOPs are closest to SPOT-AD's at ρ = 0.5 and 0.7
    assert t.loc[0.5, "SPoT best prior"] == pytest.approx(72.0) and t.loc[0.5, "Best prior"] == "uniform (best of 2)"
    assert t.loc[0.5, "Winner"] == "pruning"  # SPOT-AD 75 > sampling's best 72
    assert t.loc[0.7, "SPoT Isotropic"] == 79.5 and t.loc[0.7, "Winner"] == "sampling"  # 79.5 > ToMe's 79


def test_prior_selection_table_marks_the_defaults_and_the_gap_to_isotropic(tmp_path, config):
    base = dict(experiment="evaluation", backbone="cls_in1k", variant="spot", model_format="spot_vit", method="spot",
                positions="placed", budget_set="main", n_images=100, metric="acc1", seed=0)
    rows = [dict(base, placement=p, budget=b, value=v + b)
            for p, v in (("isotropic", 50.0), ("salient(layout=sample)", 10.0), ("salient", 52.0),
                         ("salient(blur=0.05)", 48.0)) for b in (4, 9)]
    rows += [dict(r, backbone="mae_in1k", value=r["value"] + 10) for r in rows]
    t = paper.build("prior_selection", _write(tmp_path, prior_selection=rows), config)
    one = t[t.Backbone == "CLS-IN1k"].set_index("Prior")
    assert one.loc["Salient", "Chosen"] == "✓" and one.loc["Salient(layout=sample)", "Chosen"] == ""
    assert one.loc["Salient", "4 Tok. Δ vs Isotropic (points)"] == 2.0
    assert one.loc["Salient(layout=sample)", "9 Tok. Acc@1 (%)"] == 19.0
    assert one.loc["Salient(blur=0.05)", "9 Tok. Δ vs Isotropic (points)"] == -2.0
    mean = t[t.Backbone == "mean over backbones"].set_index("Prior")
    assert mean.loc["Salient", "4 Tok. Acc@1 (%)"] == 61.0 and mean.loc["Salient", "4 Tok. Δ vs Isotropic (points)"] == 2.0
    # the rule's pick on these results: the best mean over backbones and budgets among the candidates (never
    # Isotropic)
    assert list(t.loc[t["Rule's pick"] == "★", "Prior"]) == ["Salient"] and mean.loc["Salient", "Rule's pick"] == "★"
    # a candidate better at the sparse budget alone but worse on average is not picked; better on average, it is
    sparse = [dict(r, value=r["value"] + (6 if r["budget"] == 4 else -6)) if r["placement"] == "salient(blur=0.05)"
              else r for r in rows]
    better = [dict(r, value=r["value"] + 20) if r["placement"] == "salient(blur=0.05)" else r for r in rows]
    for name, changed, pick in (("a", sparse, "Salient"), ("b", better, "Salient(blur=0.05)")):
        (tmp_path / name).mkdir()
        t = paper.build("prior_selection", _write(tmp_path / name, prior_selection=changed), config)
        assert list(t.loc[t["Rule's pick"] == "★", "Prior"]) == [pick]
    assert t.set_index(["Backbone", "Prior"]).loc[("mean over backbones", "Salient"), "Chosen"] == "✓"


def test_prior_selection_pick_is_a_salient_candidate_whatever_the_other_priors_score(tmp_path, config):
    """The candidates hold every evaluated prior (Figure 5 chooses on them); ★ picks Salient's settings only, even
    when another prior (Uniform, Boundary) or the reference (Isotropic) beats every Salient candidate; ✓ keeps its
    meaning (Salient's defaults and Isotropic)."""
    base = dict(experiment="evaluation", backbone="cls_in1k", variant="spot", model_format="spot_vit", method="spot",
                positions="placed", budget_set="main", n_images=100, metric="acc1", seed=0)
    scores = {"uniform": 95.0, "isotropic": 90.0, "center": 80.0, "boundary": 99.0, "salient": 30.0,
              "salient(blur=0.05)": 40.0, "salient(layout=sample)": 10.0}
    rows = [dict(base, placement=p, budget=b, value=v + b) for p, v in scores.items() for b in (4, 9)]
    rows += [dict(r, backbone="mae_in1k") for r in rows]
    t = paper.build("prior_selection", _write(tmp_path, prior_selection=rows), config)
    assert list(t.loc[t["Rule's pick"] == "★", ["Backbone", "Prior"]].itertuples(index=False, name=None)) == \
        [("mean over backbones", "Salient(blur=0.05)")]
    assert set(t.loc[t.Chosen == "✓", "Prior"]) == {"Salient", "Isotropic"}
    without_salient = [r for r in rows if not r["placement"].startswith("salient")]
    (tmp_path / "none").mkdir()
    t = paper.build("prior_selection", _write(tmp_path / "none", prior_selection=without_salient), config)
    assert not (t["Rule's pick"] == "★").any()  # no Salient candidate: no pick, rather than another prior


def test_table_csv_drops_float_noise_but_keeps_precision(tmp_path):
    frame = pd.DataFrame({"Prior": ["Salient"], "Δ (points)": [0.1 + 0.2], "Acc@1 (%)": [53.75 / 3]})
    csv = paper.write_table_files(frame, tmp_path, "t")[0].read_text()
    assert csv.splitlines()[1] == "Salient,0.3,17.9166666667"


def test_table5_csv_carries_each_cells_interval_over_the_images(tmp_path, config):
    """Cells measured with per-image outcomes get their 95 % interval in the CSV (the mean over a stochastic prior's
    seeds: the interval of each image's mean outcome), not in the Markdown; cells without outcomes get none."""
    import numpy as np

    from spot.stats import mean_interval, outcome_columns, wilson

    config = {**config, "evaluation": {**config["evaluation"], "budgets": [4]}}
    rng = np.random.default_rng(0)
    bits = {key: rng.random(100) < p for key, p in (("uniform0", 0.4), ("uniform1", 0.42), ("isotropic", 0.5))}
    rows = []
    for r in _eval_rows():
        key = r["placement"] + ("" if r["placement"] == "isotropic" else str(r["seed"]))
        if r["metric"] == "acc1" and key in bits:
            r = {**r, **outcome_columns(bits[key])}
        rows.append(r)
    e, o = tmp_path / "evaluation.csv", tmp_path / "oracle.csv"
    pd.DataFrame(rows).to_csv(e, index=False)
    pd.DataFrame(_oracle_rows()).to_csv(o, index=False)
    inputs = {"evaluation": [e], "oracle": [o], **_write(tmp_path, transfer=_transfer_rows())}
    t = paper.build("table5", inputs, config).set_index("Prior")
    col = "4 Tok. Acc@1 (%)"
    low, high = wilson(int(bits["isotropic"].sum()), 100)
    assert t.loc["Isotropic", f"{col} 95% CI low"] == pytest.approx(100 * low)
    assert t.loc["Isotropic", f"{col} 95% CI high"] == pytest.approx(100 * high)
    mean = mean_interval((bits["uniform0"].astype(float) + bits["uniform1"]) / 2)
    assert (t.loc["Uniform", f"{col} 95% CI low"], t.loc["Uniform", f"{col} 95% CI high"]) == \
        pytest.approx((mean.low, mean.high))
    assert np.isnan(t.loc["Isotropic", "4 Tok. kNN (%) 95% CI low"])  # kNN rows here carry no outcomes
    paths = paper.write("table5", t.reset_index(), tmp_path / "out", inputs)
    assert f"{col} 95% CI low" in pd.read_csv(paths[0]).columns
    assert "95% CI" not in paths[1].read_text() and "95% CI" not in paths[2].read_text()


def test_table2_and_table8_csvs_carry_the_intervals_too(tmp_path, config):
    import numpy as np

    from spot.stats import outcome_columns, wilson

    config = {**config, "evaluation": {**config["evaluation"], "budgets": [4], "extra_budgets": []},
              "oracle": {**config["oracle"], "sparse_budget": 4}}
    bits = np.random.default_rng(1).random(100) < 0.5
    rows = [{**r, **outcome_columns(bits)} if (r["placement"], r["metric"]) == ("isotropic", "acc1") else r
            for r in _eval_rows()]
    e, o = tmp_path / "evaluation.csv", tmp_path / "oracle.csv"
    pd.DataFrame(rows).to_csv(e, index=False)
    pd.DataFrame(_oracle_rows()).to_csv(o, index=False)
    low, high = (100 * x for x in wilson(int(bits.sum()), 100))
    t8 = paper.build("table8", {"evaluation": [e]}, config).iloc[-1]
    assert (t8["4 Tok. Acc@1 (%) 95% CI low"], t8["4 Tok. Acc@1 (%) 95% CI high"]) == pytest.approx((low, high))
    t2 = paper.build("table2", {"evaluation": [e], "oracle": [o]}, config).set_index("Prior").loc["Isotropic"]
    assert t2["Acc@1 (%)"] == f"{100 * bits.mean():.2f}"  # the paper's display: mean (± std over seeds)
    assert (t2["Acc@1 (%) 95% CI low"], t2["Acc@1 (%) 95% CI high"]) == pytest.approx((low, high))


def test_oracle_tables_carry_intervals_from_outcomes_and_from_the_records(tmp_path, config):
    import numpy as np

    from spot.stats import outcome_columns, paired_difference, wilson

    rng = np.random.default_rng(3)
    iso, on = rng.random(100) < 0.5, rng.random(100) < 0.8
    base = dict(backbone="cls_in1k", variant="spot", method="spot", positions="placed", n_images=100, seed=None,
                budget=4)
    d = paired_difference(iso, on)  # isotropic − ascent: the drop, paired
    oracle = _oracle_rows() + _control_rows() + [
        dict(base, experiment="table1", placement="isotropic", init="", setting="none", metric="acc1",
             **outcome_columns(iso)),
        dict(base, experiment="table1", placement="spot_on", init="isotropic", setting="lr=0.01,steps=10",
             metric="displacement_px", value=3.0, ci_low=2.5, ci_high=3.5),
        dict(base, experiment="table6", placement="isotropic", init="", setting="none", metric="acc1",
             **outcome_columns(iso)),
        dict(base, experiment="table6", placement="spot_on_ascent", init="isotropic", setting="lr=0.01,steps=10",
             metric="acc1", **outcome_columns(on)),
        dict(base, experiment="table6", placement="spot_on_ascent", init="isotropic", setting="lr=0.01,steps=10",
             metric="drop_vs_isotropic", value=d.difference, ci_low=d.low, ci_high=d.high)]
    for r in oracle:  # Table 3's mean RSG with the interval the oracle wrote
        if r["experiment"] == "table3" and r["metric"] == "rsg":
            r.update(ci_low=r["value"] - 2.0, ci_high=r["value"] + 2.0)
    inputs = _write(tmp_path, oracle=oracle, transfer=_transfer_rows())
    low, high = (100 * x for x in wilson(int(iso.sum()), 100))
    t1 = paper.build("table1", inputs, config).set_index("Method")
    assert (t1.loc["SPoT", "Acc@1 (%) 95% CI low"], t1.loc["SPoT", "Acc@1 (%) 95% CI high"]) == \
        pytest.approx((low, high))
    on_row = t1[t1.Positions == "Subpixel"].loc["SPoT-ON"]
    assert (on_row["Mean displacement (px) 95% CI low"], on_row["Mean displacement (px) 95% CI high"]) == (2.5, 3.5)
    t3 = paper.build("table3", inputs, config).set_index("Statistic")
    mean_rsg = t3.loc["RSG (%), mean over trajectories (Eq. 5)"]
    assert (mean_rsg["4 Tok. 95% CI low"], mean_rsg["4 Tok."], mean_rsg["4 Tok. 95% CI high"]) == (14.0, 16.0, 18.0)
    assert np.isnan(t3.loc["RSG (%), median over trajectories", "4 Tok. 95% CI low"])  # a median: none written
    t6 = paper.build("table6", inputs, config).set_index("Case").loc["Ascent (SPoT-ON)"]
    assert (t6["Drop vs Isotropic (points) 95% CI low"], t6["Drop vs Isotropic (points) 95% CI high"]) == \
        pytest.approx((d.low, d.high))
    assert t6["Acc@1 (%) 95% CI low"] == pytest.approx(100 * wilson(int(on.sum()), 100)[0])
    controls = paper.build("oracle_controls", inputs, config)
    assert "4 Tok. 95% CI low" in controls.columns and "9 Tok. 95% CI high" in controls.columns


def test_pruning_tables_carry_intervals_and_the_winner_holds_beyond_the_noise(tmp_path, config):
    import numpy as np

    from spot.stats import outcome_columns, paired_difference

    rng = np.random.default_rng(4)
    n = 2000
    dense = rng.random(n) < 0.80
    close = dense & (rng.random(n) < 0.99)  # SPOT-AD at 0.7: ≈ 0.8 points below dense, many images shared
    rows = []
    for r in _pruning_rows():
        r = {**r, "n_images": n}
        if r["metric"] == "acc1":
            if r["method"] == "vit":
                r.update(outcome_columns(dense))
            elif r["method"] == "spot_ad" and r["keep_ratio"] == 0.7:
                r.update(outcome_columns(close))
            elif r["placement"] == "isotropic" and r["budget"] == 26:  # sampling's best at the 0.7 point
                r.update(outcome_columns(close | (rng.random(n) < 0.004)))
            else:
                r.update(outcome_columns(rng.random(n) < r["value"] / 100))
        rows.append(r)
    write_table(rows, tmp_path / "pruning.csv", config={})
    inputs = {"pruning": [tmp_path / "pruning.csv"]}
    t1 = paper.build("pruning_table1", inputs, config).set_index("Method")
    d = paired_difference(close, dense)
    assert t1.loc["SPOT-AD", "Δ (points)"] == pytest.approx(d.difference)
    assert (t1.loc["SPOT-AD", "Δ (points) 95% CI low"], t1.loc["SPOT-AD", "Δ (points) 95% CI high"]) == \
        pytest.approx((d.low, d.high))
    assert t1.loc["SPOT-AD", "Acc@1 (%) 95% CI low"] < t1.loc["SPOT-AD", "Acc@1 (%)"]
    ablations = paper.build("pruning_ablations", inputs, config)
    assert ablations["Acc@1 (%) 95% CI high"].notna().all()
    t = paper.build("sampling_vs_pruning", inputs, config).set_index("ρ")
    # at ρ = 0.7 sampling's best is ahead by ≈ 0.3 points on the same images: not beyond the noise
    assert t.loc[0.7, "Winner"] == "tie (within noise)"
    assert t.loc[0.5, "Winner"] == "pruning"  # SPOT-AD ≈ 75 against sampling's best ≈ 72 on 2 000 images
    assert t.loc[0.5, "SPOT-AD 95% CI low"] < t.loc[0.5, "SPOT-AD"] < t.loc[0.5, "SPOT-AD 95% CI high"]


def test_audit_names_the_record_rows_and_images_behind_a_cell(tmp_path, monkeypatch, config):
    """Table 2's Uniform Acc@1 is the mean over two seeds' rows: audit --row --column lists exactly those rows of the
    evaluation record, with the image subset they were measured on."""
    from spot.reproduce.audit import cell_rows, format_cell_rows

    monkeypatch.chdir(tmp_path)
    subsets = {"test": {"kind": "stratified", "seed": 0, "n_images": 100, "split_size": 10000, "classes": 10,
                        "indices_sha256": "ab" * 32}}
    config = {**config, "evaluation": {**config["evaluation"], "budgets": [4], "extra_budgets": []},
              "oracle": {**config["oracle"], "sparse_budget": 4}}
    Path("paper_figures/p").mkdir(parents=True)
    e = write_table(_eval_rows(), "results/p/evaluation.csv", config={}, extra={"subsets": subsets})
    o = write_table(_oracle_rows(), "results/p/oracle.csv", config={})
    inputs = {"evaluation": [e], "oracle": [o]}
    t = paper.build("table2", inputs, config)
    assert not [c for c in t.columns if "⟵" in c]  # the lineage is in attrs, not in the table
    paper.write("table2", t, "paper_figures/p", inputs)
    row = int(t.index[t.Prior == "Uniform"][0])
    rows = cell_rows("paper_figures/p/table2.csv", row, "Acc@1 (%)")
    assert [r["row"] for r in rows] == ["results/p/evaluation.csv#0", "results/p/evaluation.csv#2"]
    assert [(r["placement"], r["seed"], r["metric"], r["value"]) for r in rows] == [
        ("uniform", 0, "acc1", 40.0), ("uniform", 1, "acc1", 42.0)]
    assert rows[0]["images"] == subsets and "stratified 100 of 10000" in format_cell_rows(rows)
    assert cell_rows("paper_figures/p/table2.csv", row, "Prior") is None  # a label: no record row behind it

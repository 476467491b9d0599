"""spot.findings: the decision rules, per-image scores, paired comparisons and every registered finding, on small
synthetic result tables written as the experiment commands write them (spot.stats.outcome_columns)."""
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from spot.findings import (CONTRADICTED, FINDINGS, HOLDS, INCONCLUSIVE, MIXED, NOT_MEASURED, Verdict, evaluate,
                           evaluate_all)
from spot.findings.measure import Scores, greater, less, overall, paired, rows, within
from spot.findings.registry import KINDS, NotMeasured
from spot.stats import outcome_columns, paired_difference

N_EVAL, N_ORACLE = 200, 100  # the evaluation's (and pruning's) images, the oracle's (and transfer's)
MAIN = "lr=0.01,steps=10"
CONFIG = {
    "backbones": {"cls": {"label": "CLS", "classifier": "train:backbone_cls"},
                  "mae": {"label": "MAE", "pretrained": "train:backbone_mae_pretrain", "classifier": "train:mae"}},
    "oracle": {"sparse_budget": 4, "settings": [{"lr": 3.0e-3, "steps": 5}, {"lr": 1.0e-2, "steps": 10}],
               "main_setting": 1},
    "evaluation": {"budgets": [4, 9, 36]},
    "transfer": {"budget": 4},
    "pruning": {"equal_cost": "spot_ad"},
}


def first(k, n):
    """``k`` correct images out of ``n``: the first k (nested: a larger k is correct wherever a smaller one is)."""
    return np.arange(n) < k


def acc(bits, metric="acc1", **keys) -> dict:
    return {**keys, "metric": metric, **outcome_columns(bits)}


def write(tmp_path, name, records) -> str:
    path = tmp_path / f"{name}.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return str(path)


# ------------------------------------------------------------------------------------------- a full synthetic run
# levels of accuracy (images correct of 200 / of 100): every claimed-better side gets the higher one

def level(name, n):
    return first(round({"high": 0.9, "mid": 0.55, "low": 0.2, "floor": 0.05}[name] * n), n)


def evaluation_records(backbone, n=N_EVAL):
    bump = {"low": "mid", "mid": "high"} if backbone == "mae" else {}  # MAE: more robust at the smallest budget
    lv = lambda name: level(bump.get(name, name), n)  # noqa: E731
    spot = dict(backbone=backbone, variant="spot", method="spot", positions="placed", grid_tokens=36)
    out = [acc(lv("low"), **spot, placement="isotropic", budget=4),
           acc(level("mid", n), **spot, placement="isotropic", budget=9),
           acc(level("high", n), **spot, placement="isotropic", budget=36)]
    for seed in (0, 1, 2):  # a stochastic prior: one row per seed
        out += [acc(lv("mid"), **spot, placement="center", budget=4, seed=seed),
                acc(level("mid", n), **spot, placement="center", budget=9, seed=seed),
                acc(level("low", n), **spot, placement="center", budget=36, seed=seed)]
        grid = dict(spot, variant="grid_control", placement="grid_random", seed=seed)
        out += [acc(level("floor", n), **grid, budget=4), acc(level("floor", n), **grid, budget=9)]
    out.append(acc(level("high", n), **dict(spot, variant="grid_control", placement="grid_random", budget=36)))
    out.append(acc(level("high", n), **dict(spot, variant="parent", method="patchdropout",
                                            placement="grid_random", budget=36)))
    return out


def oracle_records(backbone, n=N_ORACLE):
    c = dict(backbone=backbone, experiment="controls", init="isotropic", setting=MAIN, positions="placed")
    start = dict(c, placement="isotropic", init="", setting="none")
    out = [acc(level("high", n), backbone=backbone, experiment="table1", placement="spot_on", init="isotropic",
               setting=MAIN, budget=4, positions="placed"),
           acc(level("low", n), backbone=backbone, experiment="table1", placement="spot_on", init="isotropic",
               setting=MAIN, budget=4, positions="snapped")]
    for budget in (4, 36):
        out += [acc(level("low", n), **start, budget=budget),
                acc(level("high", n), **c, placement="spot_on", budget=budget),
                acc(level("mid", n), **c, placement="spot_on_label_free", budget=budget),
                acc(level("high", n), "target_rate", **c, placement="spot_on_random_target", budget=budget, seed=0),
                acc(level("floor", n), "target_rate_init", **c, placement="spot_on_random_target", budget=budget,
                    seed=0),
                acc(level("floor", n), "blank_acc1", **start, budget=budget),
                acc(level("mid", n), "blank_acc1", **c, placement="spot_on", budget=budget)]
    out += [rsg_record(backbone, 4, 0.8, 0.2, 1.4, n)]  # Table 3: a slight gain, as the paper's
    return out


def rsg_record(backbone, budget, value, low, high, n=N_ORACLE):
    """Table 3's mean relative saliency gain (%) with the interval over images the oracle writes."""
    return dict(backbone=backbone, experiment="table3", placement="spot_on", init="isotropic", setting=MAIN,
                positions="placed", budget=budget, metric="rsg", value=value, n_images=n, ci_low=low, ci_high=high)


def transfer_records(n=N_ORACLE):
    out = []
    for source, target in (("cls", "mae"), ("mae", "cls")):
        base = dict(experiment="table4", source=source, target=target, placement="spot_on", init="isotropic",
                    budget=4, setting=MAIN)
        out += [acc(level("low", n), "original_acc1", **base), acc(level("mid", n), "transfer_acc1", **base)]
    return out


def pruning_records(backbone, n=N_EVAL, spot_ad_gflops=6.0, ablation=True):
    p = dict(backbone=backbone, variant="parent", budget=36)

    def pruned(setting, rho, bits, gflops, trained=0.7, method=None):
        keys = dict(p, method=method or setting, setting=setting, placement="grid", keep_ratio=rho,
                    trained_keep_ratio=trained)
        return [acc(bits, **keys), dict(keys, metric="gflops", value=gflops)]

    out = pruned("", 1.0, level("high", n), 10.0, trained=None, method="vit")
    out += pruned("spot_ad", 0.7, level("high", n), spot_ad_gflops)  # equal to dense: within 1 point
    out += pruned("spot_ad", 0.5, level("low", n), 5.0)
    out += pruned("evit", 0.7, level("mid", n), 6.0)
    out += pruned("heuristic", 0.7, level("low", n), 6.0)
    if ablation:
        out += pruned("spot_ad_no_dynamics", 0.7, level("mid", n), 5.8, method="spot_ad")
    for m, gflops in ((20, 5.1), (30, 6.1)):  # sampling at equal cost
        keys = dict(backbone=backbone, variant="spot", method="spot", setting="", placement="isotropic", budget=m)
        out += [acc(level("mid", n), **keys), dict(keys, metric="gflops", value=gflops)]
    return out


N_LEARNED = 200  # the learned_placement job's images
# the SPoT forward's GFLOPs at each measured budget (the learned rows add a glance of 0.5)
COSTS = {4: 1.0, 5: 2.0, 9: 5.0, 10: 6.0}


def learned_records(backbone, n=N_LEARNED, other="mae"):
    """One backbone's learned_placement rows: the priors at the budgets bracketing the learned costs (1.5 and 5.5
    GFLOPs: between 4 and 5 tokens, between 9 and 10), the learned policy, its shuffled and transferred controls."""
    lp = dict(backbone=backbone, variant="spot", method="spot", reads_true_mask=False, placement_gflops=0.0)
    out = []
    for m, g in COSTS.items():
        out.append(acc(level("low", n), **lp, placement="isotropic", budget=m, gflops=g))
        for seed in (0, 1):
            out.append(acc(level("floor", n), **lp, placement="uniform", budget=m, gflops=g, seed=seed))
        out.append(acc(level("high", n), **dict(lp, reads_true_mask=True), placement="salient", budget=m, gflops=g))
    for m in (4, 9):
        glance = dict(lp, placement_gflops=0.5, budget=m, gflops=COSTS[m] + 0.5)
        out += [acc(level("high", n), **glance, placement="learned"),
                acc(level("floor", n), **glance, placement="learned_shuffled"),
                acc(level("mid", n), **glance, placement=f"learned@{other}"),
                acc(level("floor", n), **glance, placement=f"learned@{other}_blank")]  # its blank-image control
    return out


@pytest.fixture
def full(tmp_path):
    """``{kind: [paths]}`` of a synthetic run where every claim holds on every backbone."""
    return {
        "evaluation": [write(tmp_path, f"evaluation_{b}", evaluation_records(b)) for b in ("cls", "mae")],
        "oracle": [write(tmp_path, f"oracle_{b}", oracle_records(b)) for b in ("cls", "mae")],
        "transfer": [write(tmp_path, "transfer", transfer_records())],
        "pruning": [write(tmp_path, f"pruning_{b}", pruning_records(b)) for b in ("cls", "mae")],
        "learned_placement": [write(tmp_path, f"learned_placement_{b}", learned_records(b, other=o))
                              for b, o in (("cls", "mae"), ("mae", "cls"))],
    }


# ------------------------------------------------------------------------------------------------ decision rules

@pytest.mark.parametrize("a, b, expected", [
    (first(150, N_EVAL), first(50, N_EVAL), HOLDS),  # a clear win
    (first(50, N_EVAL), first(150, N_EVAL), CONTRADICTED),  # a clear loss
    (first(100, N_EVAL), first(100, N_EVAL), INCONCLUSIVE),  # the same outcomes
    (first(100, N_EVAL), ~first(100, N_EVAL), INCONCLUSIVE),  # the same accuracy on other images
])
def test_greater_rule(a, b, expected):
    d = paired_difference(a, b)
    assert greater(d, 0.0) == expected
    assert less(d, 0.0) == {HOLDS: CONTRADICTED, CONTRADICTED: HOLDS, INCONCLUSIVE: INCONCLUSIVE}[expected]


@pytest.mark.parametrize("k, expected", [
    (990, HOLDS),  # −0.5 points, interval ≈ ±0.3: wholly above −1
    (940, CONTRADICTED),  # −3 points: wholly below −1
    (980, INCONCLUSIVE),  # −1 point exactly: the interval contains −1
])
def test_within_rule(k, expected):
    d = paired_difference(first(k, 2000), first(1000, 2000))
    assert within(d, 1.0) == expected
    assert greater(d, 0.0) == CONTRADICTED  # every one of them is a (small) loss


@pytest.mark.parametrize("placed, snapped, expected", [("high", "low", HOLDS), ("low", "high", CONTRADICTED),
                                                       ("mid", "mid", INCONCLUSIVE)])
def test_a_finding_gives_the_three_verdicts(tmp_path, placed, snapped, expected):
    records = [acc(level(lv, N_ORACLE), backbone="cls", experiment="table1", placement="spot_on", init="isotropic",
                   setting=MAIN, budget=4, positions=positions)
               for lv, positions in ((placed, "placed"), (snapped, "snapped"))]
    verdicts = evaluate("Subpixel beats grid placement", {"oracle": [write(tmp_path, "o", records)]}, CONFIG)
    assert [v.verdict for v in verdicts] == [expected, expected]  # the backbone, and the row across backbones
    v = verdicts[0]
    assert v.scope == "CLS" and v.n_images == N_ORACLE
    assert v.estimate == pytest.approx(100 * (level(placed, N_ORACLE).mean() - level(snapped, N_ORACLE).mean()))
    assert v.ci_low <= v.estimate <= v.ci_high and 0 <= v.p_value <= 1


def test_the_oracle_setting_is_the_main_one(tmp_path):
    """Rows of another oracle setting are not the finding's."""
    records = [acc(level("high", N_ORACLE), backbone="cls", experiment="table1", placement="spot_on",
                   init="isotropic", setting="lr=0.003,steps=5", budget=4, positions=p) for p in ("placed", "snapped")]
    verdicts = evaluate("Subpixel beats grid placement", {"oracle": [write(tmp_path, "o", records)]}, CONFIG)
    assert [v.verdict for v in verdicts] == [NOT_MEASURED]


# --------------------------------------------------------------------------------------------- scores and pairing

def test_seeds_are_averaged_per_image(tmp_path):
    draws = [np.array([1, 1, 0, 0, 1, 0]), np.array([1, 0, 0, 1, 1, 0]), np.array([1, 1, 1, 0, 1, 0])]
    records = [acc(d, backbone="cls", placement="center", seed=s) for s, d in enumerate(draws)]
    records.append(acc(np.array([1, 0, 0, 0, 1, 1]), backbone="cls", placement="isotropic"))
    r = rows({"evaluation": [write(tmp_path, "e", records)]}, "evaluation")
    center = r.scores(placement="center")
    assert center.draws == 3 and center.n == 6
    assert np.allclose(center.values, np.mean(draws, axis=0))
    d = paired(center, r.scores(placement="isotropic"))
    assert d.difference == pytest.approx(100 * (np.mean(draws) - 0.5))
    assert math.isnan(d.p_value)  # McNemar only for 0/1 outcomes


def test_rows_differing_in_more_than_a_seed_are_refused(tmp_path):
    records = [acc(first(3, 6), backbone="cls", placement="center"), acc(first(4, 6), backbone="mae",
                                                                        placement="center")]
    r = rows({"evaluation": [write(tmp_path, "e", records)]}, "evaluation")
    with pytest.raises(ValueError, match="differ in more than their seed"):
        r.scores(placement="center")


def test_mismatched_numbers_of_images_are_a_clear_error(tmp_path):
    cls = evaluation_records("cls", n=N_EVAL)
    mae = evaluation_records("mae", n=N_EVAL // 2)  # another limit
    inputs = {"evaluation": [write(tmp_path, "cls", cls), write(tmp_path, "mae", mae)]}
    with pytest.raises(ValueError, match="needs the same images: 100 evaluation images against 200"):
        evaluate("MAE is the most robust to sparsity", inputs, CONFIG)


def test_different_subsets_are_not_paired():
    a = Scores(np.ones(N_ORACLE), "oracle", 1)
    with pytest.raises(ValueError, match="different images"):
        paired(a, Scores(np.zeros(N_ORACLE), "evaluation", 1))
    assert paired(Scores(np.ones(5), "pruning", 1), Scores(np.zeros(5), "evaluation", 1)).difference == 100.0


# ---------------------------------------------------------------------------------------- missing rows and scopes

def test_a_missing_kind_is_not_measured_never_an_error():
    for name in FINDINGS:
        verdicts = evaluate(name, {}, CONFIG)
        assert [v.verdict for v in verdicts] == [NOT_MEASURED], name
        assert "no " in verdicts[0].note


def test_the_ablation_is_not_measured_without_its_rows(tmp_path, full):
    full["pruning"] = [write(tmp_path, f"p_{b}", pruning_records(b, ablation=False)) for b in ("cls", "mae")]
    verdicts = evaluate("The dynamics matter", full, CONFIG)
    assert {v.verdict for v in verdicts} == {NOT_MEASURED}
    assert "spot_ad_no_dynamics" in verdicts[0].note
    assert {v.verdict for v in evaluate("SPOT-AD > EViT > heuristic", full, CONFIG)} == {HOLDS}


def test_a_saving_below_30_percent_contradicts(tmp_path, full):
    full["pruning"] = [write(tmp_path, f"p_{b}", pruning_records(b, spot_ad_gflops=8.0)) for b in ("cls", "mae")]
    v = evaluate("Within 1 point at ≥ 30 % fewer GFLOPs", full, CONFIG)
    spot_ad = [x for x in v if x.scope.endswith(": spot_ad")]
    assert [x.verdict for x in spot_ad] == [CONTRADICTED, CONTRADICTED]
    assert all("saves 20.0 %" in x.note and "not met" in x.note for x in spot_ad)
    assert spot_ad[0].estimate == 0.0  # accuracy within the point: the cost is what fails


def test_overall_row():
    v = lambda scope, verdict: Verdict("f", scope, "s", verdict)  # noqa: E731
    assert overall("f", [v("A", HOLDS), v("B", HOLDS)]).verdict == HOLDS
    assert overall("f", [v("A", CONTRADICTED), v("B", CONTRADICTED)]).verdict == CONTRADICTED
    mixed = overall("f", [v("A", HOLDS), v("B", CONTRADICTED), v("C", INCONCLUSIVE), v("D", NOT_MEASURED)])
    assert mixed.verdict == MIXED and mixed.scope == "all"
    assert mixed.note == "holds: A; contradicted: B; inconclusive: C; not measured: D"
    assert overall("f", [v("A", HOLDS), v("D", NOT_MEASURED)]).verdict == HOLDS
    assert overall("f", [v("D", NOT_MEASURED)]).verdict == NOT_MEASURED


def test_one_backbone_flipped_makes_the_finding_mixed(tmp_path, full):
    flipped = [dict(r, **acc(level("floor", N_ORACLE), backbone="mae", experiment="table1", placement="spot_on",
                               init="isotropic", setting=MAIN, budget=4, positions="placed"))
               if r["experiment"] == "table1" and r["positions"] == "placed" else r for r in oracle_records("mae")]
    full["oracle"][1] = write(tmp_path, "oracle_mae_flipped", flipped)
    verdicts = evaluate("Subpixel beats grid placement", full, CONFIG)
    assert [(v.scope, v.verdict) for v in verdicts] == [("CLS", HOLDS), ("MAE", CONTRADICTED), ("all", MIXED)]
    assert verdicts[-1].note == "holds: CLS; contradicted: MAE"


# ------------------------------------------------------------------------------------------ every finding, a table

def test_every_finding_holds_on_a_run_built_to_satisfy_it(full):
    for name in FINDINGS:
        verdicts = evaluate(name, full, CONFIG)
        scoped = verdicts[:-1]
        measured = [v for v in scoped if v.verdict != NOT_MEASURED]
        assert measured and verdicts[-1].scope == "all", name
        assert all(v.verdict == HOLDS for v in measured), (name, [(v.scope, v.verdict, v.note) for v in measured])
        assert verdicts[-1].verdict == HOLDS, name
        assert all(v.n_images in (N_EVAL, N_ORACLE, N_LEARNED) for v in measured), name
    # the only scopes not measured: the pruning_ablations preset's ρ = 0.5 fine-tune
    missing = [(v.finding, v.scope) for v in evaluate_all(full, CONFIG) if v.verdict == NOT_MEASURED]
    assert missing == [("Within 1 point at ≥ 30 % fewer GFLOPs", f"{b}: spot_ad_r05") for b in ("CLS", "MAE")]


def test_the_scopes_of_a_full_run(full):
    scopes = {name: [v.scope for v in evaluate(name, full, CONFIG)] for name in FINDINGS}
    assert scopes["Centre bias helps at sparse budgets, coverage at larger ones"] == [
        "CLS, 4 tokens", "CLS, 36 tokens", "MAE, 4 tokens", "MAE, 36 tokens", "all"]
    assert scopes["SPoT beats the fair grid control at sparse budgets"] == [
        "CLS, 4 tokens", "CLS, 9 tokens", "MAE, 4 tokens", "MAE, 9 tokens", "all"]  # not at the full grid
    assert scopes["MAE is the most robust to sparsity"] == ["MAE − CLS", "all"]
    assert scopes["Oracle positions transfer between models"] == ["CLS → MAE", "MAE → CLS", "all"]
    assert scopes["SPOT-AD > EViT > heuristic"] == [
        "CLS: spot_ad vs evit", "CLS: evit vs heuristic", "MAE: spot_ad vs evit", "MAE: evit vs heuristic", "all"]
    oracle = evaluate("The oracle finds much better placements", full, CONFIG)[0]
    assert oracle.estimate == pytest.approx(35.0) and "SPoT-ON (true label) − Isotropic: +70.00" in oracle.note
    sampling = evaluate("Sampling beats pruning below the pruners' trained cost", full, CONFIG)[0]
    assert sampling.estimate == pytest.approx(35.0) and "m* = 20 tokens" in sampling.note


def test_thresholds_are_arguments(full):
    """A stricter margin turns a 35-point win inconclusive: the rule reads its threshold from the argument."""
    assert evaluate("The oracle finds much better placements", full, CONFIG, margin=40.0)[0].verdict == INCONCLUSIVE
    assert evaluate("The oracle finds much better placements", full, CONFIG, margin=50.0)[0].verdict == CONTRADICTED


def test_the_findings_table(tmp_path, full):
    from spot import paper

    frame = paper.build("findings", full, CONFIG)
    written = paper.write("findings", frame, tmp_path / "out", full)
    assert {"findings.csv", "findings.md", "findings.tex"} <= {p.name for p in written}
    assert len(pd.read_csv(tmp_path / "out" / "findings.csv")) == len(frame)
    assert list(frame.columns) == ["Finding", "Source", "Claim", "Scope", "Statistic", "Estimate (points)",
                                   "95 % CI low", "95 % CI high", "p (McNemar)", "Images", "Verdict", "Note"]
    assert list(dict.fromkeys(frame["Finding"])) == list(FINDINGS)
    assert set(frame["Verdict"]) == {HOLDS, NOT_MEASURED}
    assert set(paper.ARTIFACTS["findings"].reads) == {"evaluation", "oracle", "transfer", "pruning",
                                                      "learned_placement"}
    empty = paper.build("findings", {}, CONFIG)  # nothing measured: a row per finding, no error
    assert list(empty["Finding"]) == list(FINDINGS) and set(empty["Verdict"]) == {NOT_MEASURED}


def test_kinds_are_result_kinds_and_findings_import_without_torch():
    from spot.paper.registry import RESULT_KINDS

    assert set(KINDS) <= set(RESULT_KINDS)
    code = ("import sys, types, importlib, importlib.util; sys.modules['torch'] = None; "
            "pkg = types.ModuleType('_light'); pkg.__path__ = list(importlib.util.find_spec('spot')"
            ".submodule_search_locations); sys.modules['_light'] = pkg; "
            "f = importlib.import_module('_light.findings'); print(len(f.FINDINGS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(len(FINDINGS))


@pytest.mark.parametrize("low, high, verdict, bias", [
    (0.2, 1.4, HOLDS, "above 0"), (-1.0, 2.0, HOLDS, "not distinguishable"), (5.0, 15.0, INCONCLUSIVE, "above 0"),
    (12.0, 20.0, CONTRADICTED, "above 0"), (float("nan"), float("nan"), NOT_MEASURED, "")])
def test_saliency_finding_reads_the_interval_of_table3(tmp_path, low, high, verdict, bias):
    path = write(tmp_path, "oracle", [rsg_record("cls", 4, (low + high) / 2, low, high)])
    v = evaluate("Saliency is not what drives the oracle's placements", {"oracle": [path]}, CONFIG)[0]
    assert (v.scope, v.verdict) == ("CLS, 4 tokens", verdict) and bias in v.note
    if verdict != NOT_MEASURED:
        assert (v.ci_low, v.ci_high, v.n_images) == (low, high, N_ORACLE)


# ------------------------------------------------------------------------------------------- the learned placement

def test_a_prior_is_read_at_exactly_the_learned_cost(tmp_path):
    """Between the budgets whose costs bracket the total, each image's score mixes the two readings by the share of
    the cost interval: 1.5 GFLOPs lies halfway between 4 tokens (1.0) and 5 (2.0)."""
    from spot.findings.learned_claims import best_label_free, equal_cost

    four, five = first(60, N_LEARNED), first(100, N_LEARNED)
    keys = dict(backbone="cls", variant="spot", method="spot", placement="center", reads_true_mask=False)
    path = write(tmp_path, "lp", [acc(four, **keys, budget=4, gflops=1.0), acc(five, **keys, budget=5, gflops=2.0)])
    r = rows({"learned_placement": [path]}, "learned_placement")
    e = equal_cost(r, 1.25)
    assert (e.low, e.high, e.weight) == (4, 5, pytest.approx(0.25))
    assert np.allclose(e.scores.values, 0.75 * four + 0.25 * five)
    assert equal_cost(r, 2.0).weight == 0 and np.array_equal(equal_cost(r, 2.0).scores.values, five)
    with pytest.raises(NotMeasured, match="bracket"):
        equal_cost(r, 2.5)  # beyond the measured costs: no extrapolation
    assert best_label_free(r, 1.25).placement == "center"


def test_the_learned_findings_scopes_and_verdicts(tmp_path, full):
    """Per backbone and budget; the best prior is read between its bracketing budgets (Salient, reading the true
    mask, is never the comparison); shuffled positions as good as the policy's contradict "per-image matters"."""
    beats = evaluate("The learned placement beats every label-free placement at equal cost", full, CONFIG)
    assert [v.scope for v in beats] == ["CLS, 4 tokens", "CLS, 9 tokens", "MAE, 4 tokens", "MAE, 9 tokens", "all"]
    assert beats[0].estimate == pytest.approx(70.0) and "isotropic at 4–5 tokens, w = 0.50" in beats[0].note
    # the target (+5 points) and the share of the gap to the cross-model oracle (55 %, MAE's search) in the note
    assert "target +5 points: met" in beats[0].note and "closes 200.0 % of the gap" in beats[0].note
    assert "gap" not in beats[1].note  # no transfer rows at 9 tokens
    strict = evaluate("The learned placement beats every label-free placement at equal cost", full, CONFIG,
                      target=80.0)[0]
    assert "target +80 points: missed by 10.00 points" in strict.note and strict.verdict == HOLDS
    transfer = evaluate("A learned placement transfers to another backbone", full, CONFIG)
    assert transfer[0].scope == "MAE → CLS, 4 tokens" and transfer[0].estimate == pytest.approx(35.0)
    # a transferred policy's blank-image control (learned@<source>_blank) is not another transfer
    assert [v.scope for v in transfer] == ["MAE → CLS, 4 tokens", "MAE → CLS, 9 tokens", "CLS → MAE, 4 tokens",
                                           "CLS → MAE, 9 tokens", "all"]
    records = learned_records("cls")
    for r in records:
        if r["placement"] == "learned_shuffled":
            r.update(outcome_columns(level("high", N_LEARNED)))
    inputs = {"learned_placement": [write(tmp_path, "lp_shuffled", records)]}
    per_image = evaluate("The learned placement's per-image positions matter", inputs, CONFIG)
    assert [v.verdict for v in per_image] == [INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE]


def test_the_learned_placement_table(full):
    from spot import paper

    t = paper.build("learned_placement", full, CONFIG)
    assert list(t["m"]) == [4, 9, 4, 9] and list(t["Model"]) == ["CLS", "CLS", "MAE", "MAE"]
    first_row = t.iloc[0]
    assert first_row["Learned"] == pytest.approx(90.0) and first_row["Best label-free"] == pytest.approx(20.0)
    assert first_row["Best label-free is"] == "isotropic" and first_row["Shuffled"] == pytest.approx(5.0)
    assert first_row["Δ vs best label-free (points)"] == pytest.approx(70.0)
    assert first_row["Salient (true mask)"] == pytest.approx(90.0)  # beside, never the comparison
    low, high = first_row["Δ vs best label-free (points) 95% CI low"], first_row["Δ vs best label-free (points) 95% CI high"]
    assert low < 70 < high
    # the transfer rows give the cross-model oracle at 4 tokens (the other backbone's search), and the gap closed
    assert first_row["Cross-model oracle"] == pytest.approx(55.0)
    assert first_row["Gap closed (%)"] == pytest.approx(100 * (90 - 20) / (55 - 20))
    assert np.isnan(t.iloc[1]["Cross-model oracle"])  # none measured at 9 tokens


def test_the_readme_block_states_each_scope_with_the_targets_its_note_judges(tmp_path):
    from spot.paper.findings import COLUMNS, readme_block

    def row(scope, estimate, verdict, note):
        return dict(zip(COLUMNS, ("F", "ours: this project", "claim", scope, "s", estimate, estimate - 1,
                                  estimate + 1, "", 10, verdict, note)))

    frame = pd.DataFrame([
        row("CLS, 9 tokens", 6.0, HOLDS, "best label-free: center at 10–11 tokens, w = 0.47; 10.55 MFLOPs; "
            "target +5 points: met; closes 45.7 % of the gap to the cross-model oracle (69.70 %, from mae): "
            "target 30 % met"),
        row("MAE, 9 tokens", 2.0, HOLDS, "best label-free: center at 10 tokens"),
        row("all", float("nan"), HOLDS, ""),
        dict(row("CLS, 4 tokens", 3.0, HOLDS, ""), Finding="G", Statistic="mean relative saliency gain (Eq. 5, %)")])
    frame.to_csv(tmp_path / "findings.csv", index=False)
    block = readme_block(tmp_path / "findings.csv")
    assert ("CLS, 9 tokens: +6.0 [+5.0, +7.0] holds (target +5 points: met; closes 45.7 % of the gap to the "
            "cross-model oracle (69.70 %, from mae): target 30 % met)") in block
    assert "MAE, 9 tokens: +2.0 [+1.0, +3.0] holds |" in block  # no target in its note: nothing added
    assert "| F | ours | **holds** |" in block
    assert "CLS, 4 tokens: +3.0 % [+2.0, +4.0] holds |" in block  # a statistic in % says so; points are the default

"""``spot compare``: synthetic run and reference roots, compared row by row, findings and tables."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from spot.app.cli import main
from spot.reproduce.compare import (RELATIVE_EXACT, compare, familywise_ratio, is_measured, judge_noise,
                                    render_markdown)
from spot.stats import Z, outcome_columns

N_IMAGES = 2000
PRESET = "embedded"


def _outcomes(seed=0, p=0.6):
    return np.random.default_rng(seed).random(N_IMAGES) < p


def _flip(bits, up: int, down: int):
    """``bits`` with ``up`` wrong images made right and ``down`` right ones made wrong."""
    out = bits.copy()
    out[np.flatnonzero(~bits)[:up]] = True
    out[np.flatnonzero(bits)[:down]] = False
    return out


def _write(path, rows, commit="c0ffee", cpu="Test CPU"):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    prov = {"code": {"git_commit": commit, "git_dirty": False}, "device": {"type": "cpu", "cpu": cpu, "isa": "avx2"}}
    path.with_suffix(".json").write_text(json.dumps({"provenance": prov}))


def make_root(root, *, acc=None, gflops=1.2345678, findings="holds", knn_ci=None, commit="c0ffee"):
    """A root with evaluation (two acc1 rows with outcomes, a kNN row with a CI only), pruning (an exact gflops row),
    throughput, a findings table and table5."""
    acc = acc if acc is not None else {4: _outcomes(0), 9: _outcomes(1)}
    res = root / "results" / PRESET
    base = {"experiment": "evaluation", "backbone": "cls_in1k", "variant": "spot", "placement": "isotropic",
            "seed": 0, "split": "val"}
    rows = [{**base, "budget": b, "metric": "acc1", **outcome_columns(bits)} for b, bits in acc.items()]
    knn = knn_ci or {"value": 55.0, "n_images": N_IMAGES, "ci_low": 52.8, "ci_high": 57.2}
    rows.append({**base, "budget": 4, "metric": "knn", **knn})
    _write(res / "evaluation" / "cls_in1k.csv", rows, commit=commit)
    _write(res / "pruning" / "cls_in1k.csv", [{"backbone": "cls_in1k", "method": "spot_ad", "keep_ratio": 0.7,
                                               "metric": "gflops", "value": gflops}], commit=commit)
    _write(res / "throughput" / "cls_in1k.csv", [{"backbone": "cls_in1k", "budget": 4, "metric": "images_per_s",
                                                  "value": 1000.0 + (commit != "c0ffee")}], commit=commit)
    figures = root / "paper_figures" / PRESET
    figures.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"Finding": "SPoT beats the grid", "Scope": "4 tokens", "Verdict": findings},
                  {"Finding": "SPoT beats the grid", "Scope": "36 tokens", "Verdict": "holds"}]).to_csv(
        figures / "findings.csv", index=False)
    pd.DataFrame([{"Model": "SPoT", "4 Tok. Acc@1 (%)": rows[0]["value"]}]).to_csv(figures / "table5.csv",
                                                                                  index=False)
    return root


def _compare(tmp_path, capsys, *extra, **run_kwargs):
    """``spot compare RUN REFERENCE`` on a run made with ``run_kwargs`` and the default reference: (exit, report)."""
    make_root(tmp_path / "ref")
    make_root(tmp_path / "run", **run_kwargs)
    code = main(["compare", str(tmp_path / "run"), str(tmp_path / "ref"), "--out", str(tmp_path / "report.md"),
                 *extra])
    capsys.readouterr()
    return code, re.sub(" +", " ", (tmp_path / "report.md").read_text())  # markdown tables' padding squashed


def _verdicts(tmp_path, **run_kwargs):
    make_root(tmp_path / "ref")
    make_root(tmp_path / "run", **run_kwargs)
    c = compare(tmp_path / "run", tmp_path / "ref", PRESET)
    return c, {(r["file"].split("/")[0], r["row"]): r for r in c.rows.to_dict("records")}


def test_measured_columns():
    assert all(is_measured(c) for c in ("value", "outcomes", "ci_low", "wall_time_s", "ms_per_batch"))
    assert not any(is_measured(c) for c in ("budget", "n_images", "keep_ratio", "grid_tokens", "metric"))


def test_identical_runs(tmp_path, capsys):
    code, report = _compare(tmp_path, capsys, "--html", str(tmp_path / "report.html"))
    c = compare(tmp_path / "run", tmp_path / "ref", PRESET)
    assert code == 0 and set(c.rows["verdict"]) == {"identical"} and len(c.rows) == 4
    assert "**REPRODUCED**" in report and "c0ffee (3 files)" in report and "Test CPU avx2" in report
    assert "throughput/cls_in1k.csv | not compared: timings vary by machine" in report
    assert "table5.csv | byte-identical" in report
    assert "<table" in (tmp_path / "report.html").read_text()


def test_few_images_within_many_beyond(tmp_path, capsys):
    base = _outcomes(0)
    c, rows = _verdicts(tmp_path, acc={4: _flip(base, up=3, down=2), 9: _flip(_outcomes(1), up=100, down=0)})
    few, many = rows[("evaluation", "budget=4, metric=acc1")], rows[("evaluation", "budget=9, metric=acc1")]
    assert few["verdict"] == "within" and few["tolerance_used"] == "paired outcomes"
    assert few["difference"] == pytest.approx(100 * 1 / N_IMAGES)
    assert many["verdict"] == "beyond" and many["difference"] == pytest.approx(100 * 100 / N_IMAGES)
    table5 = c.tables.set_index("table").loc["table5.csv"]
    assert table5["status"] == "differs" and table5["differing numeric cells"] == 1
    assert table5["largest abs difference"] == pytest.approx(100 * 1 / N_IMAGES)
    code, report = _compare(tmp_path, capsys, acc={4: _flip(base, up=3, down=2), 9: _flip(_outcomes(1), 100, 0)})
    assert code == 1 and "**NOT REPRODUCED**" in report
    beyond = report.split("## Rows beyond tolerance")[1].split("##")[0]
    assert "budget=9, metric=acc1" in beyond and "budget=4, metric=acc1" not in beyond


def test_unpaired_ci_row(tmp_path):
    _, rows = _verdicts(tmp_path, knn_ci={"value": 55.5, "n_images": N_IMAGES, "ci_low": 53.3, "ci_high": 57.7})
    knn = rows[("evaluation", "budget=4, metric=knn")]
    assert knn["tolerance_used"] == "unpaired CIs" and knn["verdict"] == "within"
    assert knn["tolerance"] == pytest.approx(np.hypot(2.2, 2.2))


def test_exact_row(tmp_path):
    _, rows = _verdicts(tmp_path, gflops=1.2345678 * (1 + 1e-6))
    assert rows[("pruning", "backbone=cls_in1k, method=spot_ad, keep_ratio=0.7, metric=gflops")]["verdict"] == "beyond"
    _, rows = _verdicts(tmp_path, gflops=1.2345678 * (1 + RELATIVE_EXACT / 10))
    row = rows[("pruning", "backbone=cls_in1k, method=spot_ad, keep_ratio=0.7, metric=gflops")]
    assert row["verdict"] == "within" and row["tolerance_used"] == "exact"


def test_flipped_finding_first(tmp_path, capsys):
    code, report = _compare(tmp_path, capsys, findings="contradicted")
    assert code == 1 and "**NOT REPRODUCED**" in report and "1 finding(s) reversed" in report
    assert report.index("⚠ Flipped findings (1)") < report.index("## Records per file")
    assert "| SPoT beats the grid | 4 tokens | contradicted | holds | True |" in report
    assert "36 tokens" not in report.split("## Records")[0]
    # to inconclusive: one side's interval touches the threshold — listed first, but within the noise
    code, report = _compare(tmp_path, capsys, findings="inconclusive")
    assert code == 0 and "**REPRODUCED WITHIN NOISE**" in report
    assert "| SPoT beats the grid | 4 tokens | inconclusive | holds | False |" in report


def _rows(ratios, used="paired outcomes"):
    return pd.DataFrame({"ratio": ratios, "verdict": ["beyond" if r > 1 else "within" for r in ratios],
                         "tolerance_used": used})


NO_FLIPS = pd.DataFrame(columns=["Finding", "Scope", "Verdict (run)", "Verdict (reference)"])


def test_rows_beyond_by_chance_are_within_noise_but_not_too_many_or_too_far():
    """A 95 % tolerance puts 5 % of a reproduction's rows beyond it: that is within the noise; twice as many, one row
    beyond the Bonferroni tolerance, a deterministic row that differs or a reversed finding is not."""
    chance = [0.5] * 950 + [1.5] * 50
    n = judge_noise(_rows(chance), NO_FLIPS)
    assert (n.tested, n.beyond, n.expected, n.beyond_familywise) == (1000, 50, pytest.approx(50), 0)
    assert 50 <= n.allowed < 70 and n.within_noise()
    assert n.familywise == pytest.approx(familywise_ratio(1000)) and familywise_ratio(1) == pytest.approx(1.0)
    assert familywise_ratio(1000) * Z == pytest.approx(4.056, abs=1e-3)  # z of 1 − 0.05 / 2000
    far = judge_noise(_rows([0.5] * 999 + [1.01 * n.familywise]), NO_FLIPS)
    assert far.beyond_familywise == 1 == far.familywise_unspread and not far.within_noise()
    spread = judge_noise(_rows([0.5] * 999 + [1.01 * n.familywise], "paired outcomes + seed spread"), NO_FLIPS)
    assert spread.beyond_familywise == 1 and spread.familywise_unspread == 0
    assert not judge_noise(_rows([0.5] * 900 + [1.5] * 100), NO_FLIPS).within_noise()
    exact = judge_noise(pd.concat([_rows(chance), _rows([2.0], "exact")]), NO_FLIPS)
    assert exact.tested == 1000 and exact.exact_beyond == 1 and not exact.within_noise()
    flip = pd.DataFrame([{"Finding": "F", "Scope": "A", "Verdict (run)": "holds", "Verdict (reference)": "contradicted"}])
    assert not judge_noise(_rows(chance), flip).within_noise()
    assert judge_noise(_rows(chance), flip.assign(**{"Verdict (run)": "inconclusive"})).within_noise()


def test_seed_spread_widens(tmp_path, capsys):
    acc = {4: _outcomes(0), 9: _flip(_outcomes(1), up=100, down=0)}
    spread = tmp_path / "spread.csv"
    pd.DataFrame([{"file": "evaluation/cls_in1k.csv", "budget": 9, "metric": "acc1", "seed_sd": 3.0}]).to_csv(
        spread, index=False)
    assert _compare(tmp_path, capsys, acc=acc)[0] == 1
    code, report = _compare(tmp_path, capsys, "--seed-spread", str(spread), acc=acc)
    c = compare(tmp_path / "run", tmp_path / "ref", PRESET, seed_spread=spread)
    row = c.rows[c.rows["row"] == "budget=9, metric=acc1"].iloc[0]
    assert code == 0 and row["verdict"] == "within" and row["tolerance_used"] == "paired outcomes + seed spread"
    assert (c.rows["tolerance_used"] == "paired outcomes + seed spread").sum() == 1  # only the row it names


def test_missing_root(tmp_path, capsys):
    make_root(tmp_path / "ref")
    code = main(["compare", str(tmp_path / "nothing"), str(tmp_path / "ref")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no results/embedded/" in err and "reference/embedded" in err
    assert main(["compare", str(tmp_path / "ref"), str(tmp_path / "ref"), "--preset", "smoke"]) == 2


def test_rows_on_one_side_and_changed_table(tmp_path):
    make_root(tmp_path / "ref")
    make_root(tmp_path / "run", acc={4: _flip(_outcomes(0), 2, 2), 18: _outcomes(2)})
    c = compare(tmp_path / "run", tmp_path / "ref", PRESET)
    assert sorted(c.unmatched["side"]) == ["reference", "run"]
    table5 = c.tables.set_index("table").loc["table5.csv"]
    assert table5["status"] == "byte-identical"  # same value: two images flipped each way
    text = render_markdown(c)
    assert "budget=18, metric=acc1" in text.split("## Rows on one side only")[1]


def test_spread_of_three_seed_runs_feeds_compare(tmp_path):
    """spot spread: the standard deviation of each row over three runs, in the --seed-spread format that compare
    reads back; a row that moved by less than the seeds do is within tolerance only with the spread."""
    from spot.reproduce.spread import seed_spread

    roots = [make_root(tmp_path / f"seed{i}", acc={4: _flip(_outcomes(0), 60 * i, 0), 9: _outcomes(1)})
             for i in range(3)]
    for i, root in enumerate(roots):  # a timing row inside a record file (the learned placement's images/s)
        path = root / "results" / PRESET / "evaluation" / "cls_in1k.csv"
        pd.concat([pd.read_csv(path), pd.DataFrame([{"backbone": "cls_in1k", "budget": 4, "metric": "images_per_s",
                                                     "value": 900.0 + 50 * i}])]).to_csv(path, index=False)
    frame, read = seed_spread([r / "results" / PRESET for r in roots])
    assert set(frame["file"]) == {"evaluation/cls_in1k.csv", "pruning/cls_in1k.csv"}  # throughput left out
    assert "images_per_s" not in set(frame["metric"])  # and timing rows
    four = frame[(frame.metric == "acc1") & (frame.budget.astype(float) == 4)].iloc[0]
    values = [100 * _flip(_outcomes(0), 60 * i, 0).mean() for i in range(3)]
    assert four["seed_sd"] == pytest.approx(np.std(values, ddof=1)) and four["n_runs"] == 3
    assert frame[(frame.metric == "acc1") & (frame.budget.astype(float) == 9)].iloc[0]["seed_sd"] == 0
    assert len(read) == 2 * 3
    spread_csv = tmp_path / "spread.csv"
    assert main(["spread", *(str(r / "results" / PRESET) for r in roots), "--out", str(spread_csv)]) == 0
    run = make_root(tmp_path / "run", acc={4: _flip(_outcomes(0), 100, 0), 9: _outcomes(1)})
    assert main(["compare", str(run), str(roots[0]), "--preset", PRESET]) == 1  # 100 images more: beyond
    assert main(["compare", str(run), str(roots[0]), "--preset", PRESET, "--seed-spread", str(spread_csv)]) == 0
    with pytest.raises(ValueError, match="at least 3 runs"):
        seed_spread([roots[0] / "results" / PRESET] * 2)


def test_findings_across_seed_runs_say_which_verdicts_vary(tmp_path, capsys):
    """spot spread --findings-out: each finding scope's verdict in every run, and whether they agree; a scope one run
    did not measure is left out."""
    from spot.reproduce.spread import findings_across

    roots = [make_root(tmp_path / f"seed{i}", findings="holds" if i < 2 else "inconclusive") for i in range(3)]
    verdicts, read = findings_across([r / "results" / PRESET for r in roots])
    assert verdicts.set_index("Scope")["agreement"].to_dict() == {"4 tokens": "varies",
                                                                  "36 tokens": "same in every run"}
    assert verdicts.set_index("Scope").loc["4 tokens", ["run0", "run1", "run2"]].tolist() == \
        ["holds", "holds", "inconclusive"] and len(read) == 3
    pd.DataFrame([{"Finding": "SPoT beats the grid", "Scope": "4 tokens", "Verdict": "inconclusive"},
                  {"Finding": "SPoT beats the grid", "Scope": "36 tokens", "Verdict": "not measured"}]).to_csv(
        roots[2] / "paper_figures" / PRESET / "findings.csv", index=False)
    out = tmp_path / "findings_across.csv"
    assert main(["spread", *(str(r / "results" / PRESET) for r in roots), "--out", str(tmp_path / "s.csv"),
                 "--findings-out", str(out)]) == 0
    assert pd.read_csv(out)["Scope"].tolist() == ["4 tokens"]
    pd.DataFrame([{"Finding": "F", "Scope": s, "Verdict": "holds"} for s in ("A", "B", "all")]).to_csv(
        roots[0] / "paper_figures" / PRESET / "findings.csv", index=False)
    for root in roots[1:]:  # one scope fewer: the overall verdict is over other scopes, not compared
        pd.DataFrame([{"Finding": "F", "Scope": s, "Verdict": "holds"} for s in ("A", "all")]).to_csv(
            root / "paper_figures" / PRESET / "findings.csv", index=False)
    assert findings_across([r / "results" / PRESET for r in roots])[0]["Scope"].tolist() == ["A"]
    assert "1 finding scopes measured in every run; 1 change verdict" in capsys.readouterr().out


def _as_backbone(root, backbone):
    """``root``'s CLS-IN1k evaluation records moved to ``backbone`` (file and cells), as another backbone's would be."""
    res = root / "results" / PRESET / "evaluation"
    frame = pd.read_csv(res / "cls_in1k.csv").assign(backbone=backbone)
    _write(res / f"{backbone}.csv", frame.to_dict("records"))
    return root


def test_a_stand_in_spread_widens_another_backbones_rows_and_says_so(tmp_path):
    """spot spread --stand-in-for: the one measured backbone's rows copied to another backbone's files, marked
    measured_on; compare widens that backbone's rows with them and names the stand-in in tolerance_used."""
    from spot.reproduce.spread import seed_spread, stand_in

    roots = [make_root(tmp_path / f"seed{i}", acc={4: _flip(_outcomes(0), 60 * i, 0), 9: _outcomes(1)})
             for i in range(3)]
    frame, _ = seed_spread([r / "results" / PRESET for r in roots])
    both = stand_in(frame, ["mae_in1k"])
    copied = both[both["measured_on"] == "cls_in1k"]
    assert len(both) == 2 * len(frame) and set(copied["file"]) == {"evaluation/mae_in1k.csv", "pruning/mae_in1k.csv"}
    assert set(copied["backbone"]) == {"mae_in1k"} and (both.loc[both["measured_on"] == "", "file"].str
                                                         .endswith("cls_in1k.csv").all())
    assert copied["seed_sd"].tolist() == frame["seed_sd"].tolist()
    from spot.reproduce.spread import summary

    table = summary(both).set_index(["kind", "metric"])  # the measured rows alone
    assert table.loc[("evaluation", "acc1"), "rows"] == 2 and table.loc[("evaluation", "acc1"), "max"] == pytest.approx(
        frame.loc[frame.metric == "acc1", "seed_sd"].max())
    with pytest.raises(ValueError, match="that is the backbone the spread measured"):
        stand_in(frame, ["cls_in1k"])
    with pytest.raises(ValueError, match="measured on one backbone"):
        stand_in(both, ["cls_in21k"])
    spread_csv = tmp_path / "spread.csv"
    assert main(["spread", *(str(r / "results" / PRESET) for r in roots), "--stand-in-for", "mae_in1k",
                 "--out", str(spread_csv)]) == 0
    ref = _as_backbone(make_root(tmp_path / "ref"), "mae_in1k")
    run = _as_backbone(make_root(tmp_path / "run", acc={4: _flip(_outcomes(0), 100, 0), 9: _outcomes(1)}), "mae_in1k")
    c = compare(run, ref, PRESET, seed_spread=spread_csv)
    rows = c.rows.set_index("file")
    assert set(rows.loc["evaluation/mae_in1k.csv", "tolerance_used"]) >= {"paired outcomes + seed spread of cls_in1k"}
    assert not rows.loc["evaluation/cls_in1k.csv", "tolerance_used"].str.contains(" of ").any()  # its own spread
    assert c.exit_code() == 0


def test_a_run_of_another_preset_against_a_reference(tmp_path):
    """--reference-preset: a one-backbone preset's records against the default's reference, file by file; the
    reference's other files are on one side only, never a failure."""
    ref = make_root(tmp_path / "ref")
    run = make_root(tmp_path / "run")
    (run / "results" / PRESET).rename(run / "results" / "one_backbone")
    (run / "paper_figures" / PRESET).rename(run / "paper_figures" / "one_backbone")
    (run / "results" / "one_backbone" / "pruning" / "cls_in1k.csv").unlink()
    c = compare(run, ref, "one_backbone", reference_preset=PRESET)
    assert c.exit_code() == 0 and set(c.rows["verdict"]) == {"identical"} and "reference: " + PRESET in c.preset
    assert "not compared: only in reference" in set(c.files["status"])
    with pytest.raises(FileNotFoundError, match="no results/one_backbone/"):
        compare(run, ref, "one_backbone")


def test_a_paper_preset_run_against_the_papers_published_numbers(tmp_path):
    """`spot compare RUN paper`: every published cell found in the run's table by its row keys and column; within the
    paper's tolerance, beyond it when moved by more; cells the run lacks are `not in run`, never a pass."""
    from spot.reproduce.compare import compare_paper
    from spot.paper.published import published_cells, tolerance

    cells = published_cells()
    t8 = cells[(cells.table == "table8") & cells.counterpart.astype(bool)]
    rows = {}
    for _, c in t8.iterrows():
        key = json.loads(c["row_key"])
        rows.setdefault(json.dumps(key, sort_keys=True), dict(key))[c["column"]] = c["value"]
    frame = pd.DataFrame(list(rows.values()))
    moved = t8.iloc[0]
    key0 = json.loads(moved["row_key"])
    hit = (frame[list(key0)] == pd.Series(key0)).all(axis=1)
    frame.loc[hit, moved["column"]] = moved["value"] + 3 * tolerance(moved)
    figures = tmp_path / "paper_figures" / "paper"
    figures.mkdir(parents=True)
    frame.to_csv(figures / "table8.csv", index=False)
    out = compare_paper(tmp_path, "paper")
    mine = out[out["paper table"] == moved["paper_table"]]
    assert (mine["verdict"] == "beyond").sum() == 1 and (mine["verdict"] == "within").sum() == len(t8) - 1
    assert (out[out["paper table"] != moved["paper_table"]]["verdict"].isin(["not in run", "no counterpart"])).all()
    assert main(["compare", str(tmp_path), "paper", "--preset", "paper"]) == 1
    frame.loc[hit, moved["column"]] = moved["value"]
    frame.to_csv(figures / "table8.csv", index=False)
    assert main(["compare", str(tmp_path), "paper", "--preset", "paper"]) == 0


def test_a_finding_on_one_side_only_is_listed_not_an_error(tmp_path):
    """A run of a newer commit evaluates a finding the reference did not have: listed as "run only"."""
    make_root(tmp_path / "ref")
    make_root(tmp_path / "run")
    findings = tmp_path / "run" / "paper_figures" / PRESET / "findings.csv"
    frame = pd.read_csv(findings)
    pd.concat([frame, pd.DataFrame([{"Finding": "A new finding", "Scope": "all", "Verdict": "holds"}])]).to_csv(
        findings, index=False)
    c = compare(tmp_path / "run", tmp_path / "ref", PRESET)
    assert c.findings_one_side.to_dict("records") == [{"Finding": "A new finding", "Scope": "all", "side": "run only"}]


def test_a_verdict_not_measured_or_over_other_scopes_is_no_flip(tmp_path):
    """A one-backbone run against the default's reference: a finding it cannot measure, and a finding's overall
    verdict taken over fewer scopes, are listed as judged on one side, not as flipped; a real flip still is."""
    def findings(root, rows):
        pd.DataFrame([dict(zip(("Finding", "Scope", "Verdict"), r)) for r in rows]).to_csv(
            root / "paper_figures" / PRESET / "findings.csv", index=False)

    ref, run = make_root(tmp_path / "ref"), make_root(tmp_path / "run")
    findings(ref, [("F", "A", "holds"), ("F", "B", "contradicted"), ("F", "all", "mixed"), ("G", "all", "holds"),
                   ("H", "A", "holds"), ("H", "all", "holds")])
    findings(run, [("F", "A", "holds"), ("F", "all", "holds"), ("G", "all", "not measured"),
                   ("H", "A", "inconclusive"), ("H", "all", "inconclusive")])
    c = compare(run, ref, PRESET)
    assert c.flipped[["Finding", "Scope"]].values.tolist() == [["H", "A"], ["H", "all"]]
    assert sorted(c.findings_one_side.values.tolist()) == [["F", "B", "reference only"],
                                                           ["F", "all", "over other scopes"],
                                                           ["G", "all", "measured in reference only"]]


def test_timing_rows_of_a_mixed_record_file_are_not_compared(tmp_path):
    """The learned placement's file holds Acc@1 rows and images/s rows: the timings differ run to run and are left
    out (said in the file's status), the accuracies compared."""
    for side, speed in (("ref", 1000.0), ("run", 1234.0)):
        make_root(tmp_path / side)
        bits = _outcomes(3)
        rows = [{"backbone": "cls_in1k", "placement": "learned", "budget": 9, "metric": "acc1",
                 **outcome_columns(bits)},
                {"backbone": "cls_in1k", "placement": "learned", "budget": 9, "metric": "images_per_s",
                 "value": speed, "n_images": 256}]
        _write(tmp_path / side / "results" / PRESET / "learned_placement" / "cls_in1k.csv", rows)
    c = compare(tmp_path / "run", tmp_path / "ref", PRESET)
    learned = c.rows[c.rows["file"].str.startswith("learned_placement")]
    assert len(learned) == 1 and "metric=acc1" in learned["row"].iloc[0]
    assert set(learned["verdict"]) == {"identical"} and c.exit_code() == 0
    status = c.files.set_index("file").loc["learned_placement/cls_in1k.csv", "status"]
    assert status.startswith("compared") and "2 timing rows not compared" in status

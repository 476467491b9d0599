"""spot evaluate: kNN as DINO, the sweep's rows, reproducibility, snapped / grid-subset / PatchDropout baselines,
errors, and the command line — on tiny ViTs trained here on real Fashion-MNIST canvases."""
import json
import shutil

import numpy as np
import pytest
import torch
from helpers import spot_command

from spot.experiments.evaluate import COLUMNS, EvaluationSettings, KnnSettings, evaluate_models, knn_classify, summarise
from spot.core.placement import ImageBatch, ImageStreams, even_grid_cells, place
from spot.core.positions import grid_positions, snap_to_grid
from spot.experiments.saliency import SaliencySettings
from spot.stats import decode_outcomes



pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tiny_spot):
    """Real checkpoints + records: a grid ViT (timm_vit), its SPoT retrofit and grid control (spot_vit), and an MAE
    record (format mae)."""
    vit = tiny_spot["vit"]
    mae = vit.parent / "mae.safetensors"
    shutil.copy(vit, mae)
    record = json.loads(vit.with_suffix(".json").read_text())
    mae.with_suffix(".json").write_text(json.dumps({**record, "format": "mae"}))
    return {**tiny_spot, "mae": mae}


def _settings(**changes) -> EvaluationSettings:
    s = EvaluationSettings(split="test", limit=40, batch_size=64, priors=["uniform", "isotropic", "salient"],
                           budgets=[4, 36], extra_budgets=[9, 4], seeds=[0, 1],
                           knn=KnnSettings(k=5, temperature=0.07, train_split="train", train_limit=60, chunk_size=7),
                           patchdropout=True, grid_placements=["grid_random", "grid_even"], snapped=True)
    return EvaluationSettings(**{**s.__dict__, **changes})


@pytest.fixture(scope="module")
def sweep(models, canvas):
    rows = evaluate_models({"parent": models["vit"], "grid_control": models["ctrl"]}, canvas, _settings(),
                           SaliencySettings(source="article_mask"), device="cpu", log=lambda *_: None)
    import pandas as pd

    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------------ kNN

def test_knn_equals_an_independent_weighted_vote():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    train_x = rng.normal(size=(120, 16)).astype(np.float32)
    train_y = rng.integers(0, 5, size=120)
    query = rng.normal(size=(33, 16)).astype(np.float32)
    k, T = 7, 0.07
    ours = knn_classify(torch.from_numpy(train_x) * 3.0, torch.from_numpy(train_y), torch.from_numpy(query), k=k,
                        temperature=T, num_classes=5, chunk_size=4).numpy()
    dist, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(train_x).kneighbors(query)
    votes = np.zeros((len(query), 5))
    for q in range(len(query)):
        for d, i in zip(dist[q], idx[q]):
            votes[q, train_y[i]] += np.exp((1.0 - d) / T)
    assert (ours == votes.argmax(1)).all()
    # the bank in blocks (smaller than k, uneven, larger than the bank): the merged top k are the same neighbours
    for block in (3, 50, 1000):
        blocked = knn_classify(torch.from_numpy(train_x), torch.from_numpy(train_y), torch.from_numpy(query), k=k,
                               temperature=T, num_classes=5, chunk_size=4, bank_chunk_size=block).numpy()
        assert (blocked == votes.argmax(1)).all(), block
    # k larger than the memory bank: every training feature votes
    few = knn_classify(torch.from_numpy(train_x[:3]), torch.tensor([0, 1, 1]), torch.from_numpy(query), k=20)
    assert few.shape == (33,) and set(few.tolist()) <= {0, 1}


# ------------------------------------------------------------------------------------------------------ positions

def _place(spec, m, indices, seed, split="test", patch=8):
    batch = ImageBatch((48, 48), len(indices), patch=patch, indices=indices.tolist())
    return place(spec, m, batch, None if seed is None else ImageStreams("spot-evaluate", seed, split))


def test_positions_are_per_image_so_batches_do_not_matter():
    idx = torch.arange(10, 20)
    whole = _place("uniform", 9, idx, 3)
    parts = torch.cat([_place("uniform", 9, idx[:4], 3), _place("uniform", 9, idx[4:], 3)])
    assert torch.equal(whole, parts) and not torch.equal(whole[0], whole[1])
    assert not torch.equal(whole, _place("uniform", 9, idx, 4))
    assert not torch.equal(whole, _place("uniform", 9, idx, 3, split="train"))
    assert _place("isotropic", 9, idx, None).shape == (1, 9, 2)


def test_snapped_positions_lie_on_grid_centres_and_keep_every_token():
    grid = grid_positions((48, 48), 8)
    idx = torch.arange(6)
    for prior in ("uniform", "gaussian", "center", "boundary"):
        raw = _place(prior, 13, idx, 0)
        snapped = snap_to_grid(raw, (48, 48), 8)
        assert torch.equal(snapped, _place({"name": "snapped", "of": prior}, 13, idx, 0))  # the placement too
        assert snapped.shape == raw.shape and snapped.shape[1] == 13  # duplicates kept: still 13 tokens
        on_grid = (snapped[..., None, :] == grid).all(-1).any(-1)
        assert on_grid.all()
        # each snapped token is the centre of the cell holding the raw token
        assert ((snapped - raw).abs() <= torch.tensor([4 / 48, 4 / 48], dtype=torch.float64) + 1e-12).all()


def test_grid_placements_give_distinct_grid_patches():
    grid = grid_positions((48, 48), 8)
    for m in (1, 4, 5, 9, 13, 22, 27, 31, 36):
        cells = even_grid_cells(m, (48, 48), 8)
        assert len(cells) == m and len(set(cells.tolist())) == m and cells.min() >= 0 and cells.max() < 36
        pos = _place("grid_even", m, torch.arange(3), None)
        assert pos.shape == (1, m, 2) and (pos[0][:, None] == grid[None]).all(-1).any(1).all()
    # 9 of 6×6: the layout's points lie on cell borders (8, 24, 40 px) and go, as snap_to_grid sends them, to the
    # cell below/right: every other row and column
    assert even_grid_cells(9, (48, 48), 8).tolist() == [7, 9, 11, 19, 21, 23, 31, 33, 35]
    assert even_grid_cells(36, (48, 48), 8).tolist() == list(range(36))
    random = _place("grid_random", 9, torch.arange(5), 1)
    assert random.shape == (5, 9, 2)
    for row in random:  # distinct grid patches per image
        matches = (row[:, None] == grid[None]).all(-1)
        assert matches.any(1).all() and matches.sum(0).max() == 1
    with pytest.raises(ValueError, match="outside"):
        even_grid_cells(37, (48, 48), 8)


# ------------------------------------------------------------------------------------------------------- the sweep

def _key(r):
    seed = None if pd_isna(r.seed) else int(r.seed)
    return (r.variant, r.method, r.placement, r.positions, r.budget, r.budget_set, seed, r.metric)


def test_sweep_has_exactly_the_requested_rows(sweep):
    s = _settings()
    budgets = [(4, "main"), (36, "main"), (9, "extra")]  # extra 4 is already a main budget
    expected = set()
    for variant in ("parent", "grid_control"):
        for prior in s.priors:
            seeds = [None] if prior in ("isotropic", "salient") else s.seeds  # Salient: a layout per map, no draw
            for m, budget_set in budgets:
                for seed in seeds:
                    for positions in ("placed", "snapped"):
                        expected |= {(variant, "spot", prior, positions, m, budget_set, seed, metric)
                                     for metric in ("acc1", "knn")}
    grid_methods = {"parent": [("patchdropout", "grid_random")],
                    "grid_control": [("spot", "grid_random"), ("spot", "grid_even")]}
    for variant, methods in grid_methods.items():
        for method, placement in methods:
            for m, budget_set in budgets:
                seeds = [None] if (placement == "grid_even" or m == 36) else s.seeds
                for seed in seeds:
                    expected |= {(variant, method, placement, "placed", m, budget_set, seed, metric)
                                 for metric in ("acc1", "knn")}
    got = [_key(r) for r in sweep.itertuples()]
    assert len(got) == len(set(got)) == len(expected) == 122
    assert set(got) == expected
    assert set(sweep.model_format[sweep.variant == "parent"]) == {"timm_vit"}
    assert set(sweep.tokens_mode[sweep.variant == "grid_control"]) == {"grid_subset"}
    assert set(sweep.backbone) == {"model"} and set(sweep.experiment) == {"evaluation"}
    assert (sweep.n_images == 40).all() and (sweep.grid_tokens == 36).all()
    assert (sweep.knn_train_images[sweep.metric == "knn"] == 60).all()
    assert sweep.value.between(0, 100).all()
    # the summary has one line per configuration, with n_seeds runs
    summary = summarise(sweep)
    assert len(summary) == len(sweep.drop(columns="seed").drop_duplicates(
        ["variant", "method", "placement", "positions", "budget", "budget_set", "metric"]))
    uni = summary[(summary.variant == "parent") & (summary.method == "spot") & (summary.placement == "uniform") &
                  (summary.positions == "placed")]
    assert (uni.n_seeds == 2).all() and (summary[summary.placement == "isotropic"].n_seeds == 1).all()
    assert (summary[summary.placement == "isotropic"]["std"] == 0).all()
    pair = sweep[(sweep.variant == "parent") & (sweep.method == "spot") & (sweep.placement == "uniform") &
                 (sweep.positions == "placed") & (sweep.budget == 4) & (sweep.metric == "acc1")].value
    line = uni[(uni.budget == 4) & (uni.metric == "acc1")].iloc[0]
    assert line["mean"] == pytest.approx(pair.mean()) and line["std"] == pytest.approx(pair.std(ddof=1))


def test_sweep_options_select_what_the_tables_read(models, canvas):
    """snapped / grid_model_priors / extra_budget_priors restrict the sweep; every SPoT prior stays on the SPoT model."""
    s = _settings(seeds=[0], snapped=["isotropic"], grid_model_priors=["isotropic"], extra_budget_priors=["isotropic"],
                  grid_placements=["grid_even"], patchdropout=False, limit=8)
    rows = evaluate_models({"parent": models["vit"], "spot": models["spot"], "grid_control": models["ctrl"]}, canvas,
                           s, SaliencySettings(source="article_mask"), device="cpu", log=lambda *_: None)
    got = {(r["variant"], r["method"], r["placement"], r["positions"], r["budget"]) for r in rows}
    spot = {(p, m) for (v, method, p, pos, m) in got if v == "spot" and pos == "placed"}
    assert spot == {(p, m) for p in s.priors for m in (4, 36)} | {("isotropic", 9)}
    assert {(v, p) for (v, _, p, pos, _) in got if pos == "snapped"} == {
        (v, "isotropic") for v in ("parent", "spot", "grid_control")}
    for grid_model in ("parent", "grid_control"):
        assert {p for (v, _, p, _, _) in got if v == grid_model and p not in ("grid_even",)} == {"isotropic"}
    assert {m for (_, _, p, _, m) in got if p == "grid_even"} == {4, 36, 9}
    none = _settings(snapped=False, grid_model_priors=[], extra_budget_priors=[], patchdropout=False, limit=8)
    rows = evaluate_models({"parent": models["vit"]}, canvas, none, SaliencySettings(source="article_mask"),
                           device="cpu", log=lambda *_: None)
    assert rows == []
    assert _settings(snapped=["center"]).validate().priors_for("snapped") == []  # a filter on evaluation.priors
    with pytest.raises(ValueError, match="unknown placement 'centre'"):
        _settings(snapped=["centre"]).validate()


def test_priors_with_settings_are_placements_named_by_their_label(models, canvas):
    s = _settings(priors=[{"name": "center", "scale": 0.3}, "center"], budgets=[4], extra_budgets=[], limit=8,
                  snapped=False, patchdropout=False)
    rows = evaluate_models({"spot": models["spot"]}, canvas, s, device="cpu", log=lambda *_: None)
    assert [r["placement"] for r in rows if r["metric"] == "acc1"] == ["center(scale=0.3)", "center"]


def test_placements_that_look_at_the_images_or_run_the_model_are_evaluated(models, canvas):
    """The relevance placement runs the evaluated model itself (a coarse pass); the batch gives it images and model."""
    s = _settings(priors=[{"name": "relevance", "coarse": 4}, "isotropic"], budgets=[9], extra_budgets=[], limit=8,
                  snapped=False, patchdropout=False)
    rows = evaluate_models({"spot": models["spot"]}, canvas, s, device="cpu", log=lambda *_: None)
    acc = {r["placement"]: r["value"] for r in rows if r["metric"] == "acc1"}
    assert set(acc) == {"relevance(coarse=4)", "isotropic"} and all(0 <= v <= 100 for v in acc.values())


def test_a_seed_gives_the_same_numbers_alone_or_among_others(sweep, models, canvas):
    rows = evaluate_models({"grid_control": models["ctrl"]}, canvas,
                           _settings(priors=["uniform"], budgets=[9], extra_budgets=[], seeds=[1],
                                     grid_placements=["grid_random"]),
                           SaliencySettings(source="article_mask"), device="cpu", log=lambda *_: None)
    assert len(rows) == 2 * 2 + 2  # uniform (placed, snapped) × 2 metrics + grid_random
    for r in rows:
        same = sweep[(sweep.variant == "grid_control") & (sweep.method == r["method"]) &
                     (sweep.placement == r["placement"]) & (sweep.positions == r["positions"]) &
                     (sweep.budget == 9) & (sweep.seed == 1) & (sweep.metric == r["metric"])]
        assert same.value.tolist() == [r["value"]], r


def pd_isna(value):
    import pandas as pd

    return pd.isna(value)


def _values(frame, **where):
    sel = frame
    for key, value in where.items():
        sel = sel[sel[key] == value]
    return sel.sort_values(["variant", "metric"])["value"].tolist()


def test_accuracy_rows_carry_their_outcomes_and_wilson_interval(sweep):
    assert set(sweep.metric) == {"acc1", "knn"}
    for r in sweep.itertuples():
        assert decode_outcomes(r.outcomes, r.n_images).sum() == r.n_correct
        assert r.value == 100.0 * r.n_correct / r.n_images
        assert r.ci_low <= r.value <= r.ci_high
        if 0 < r.n_correct < r.n_images:
            assert r.ci_high - r.ci_low > 0
    assert ((sweep.n_correct > 0) & (sweep.n_correct < sweep.n_images)).any()
    # every row is on the same 40 images: rows that differ in value differ in which images they got right
    assert sweep.value.nunique() > 1
    assert (sweep.groupby("outcomes")["value"].nunique() == 1).all()
    best, worst = sweep.loc[sweep.value.idxmax()], sweep.loc[sweep.value.idxmin()]
    assert best.outcomes != worst.outcomes
    assert not np.array_equal(decode_outcomes(best.outcomes, 40), decode_outcomes(worst.outcomes, 40))


def test_snapped_isotropic_at_the_full_grid_equals_plain_isotropic(sweep):
    for variant in ("parent", "grid_control"):
        plain = _values(sweep, variant=variant, method="spot", placement="isotropic", positions="placed", budget=36)
        snapped = _values(sweep, variant=variant, method="spot", placement="isotropic", positions="snapped", budget=36)
        assert len(plain) == 2 and plain == snapped


def test_full_budget_grid_methods_equal_the_plain_models(sweep, models, canvas):
    from spot.weights.checkpoints import load_trained, open_checkpoint
    from spot.data.evaluation import EvalData

    mean, std = open_checkpoint(models["vit"]).normalisation
    data = EvalData.open(canvas, "test", mean=mean, std=std, limit=40)
    vit = load_trained(models["vit"], wrap=False)
    with torch.no_grad():
        correct = vit(data.images).argmax(-1) == data.labels
    acc = 100.0 * int(correct.sum()) / len(data.labels)
    full = _values(sweep, variant="parent", method="patchdropout", budget=36, metric="acc1")
    assert full == [acc]  # bit-identical to counting the correct images
    row = sweep[(sweep.variant == "parent") & (sweep.method == "patchdropout") & (sweep.budget == 36) &
                (sweep.metric == "acc1")].iloc[0]
    assert np.array_equal(decode_outcomes(row.outcomes, row.n_images), correct.numpy())  # in the data's order
    # on the full grid, the random and even subsets of the grid control are the whole grid, as is Isotropic
    iso = _values(sweep, variant="grid_control", placement="isotropic", positions="placed", budget=36)
    assert _values(sweep, variant="grid_control", placement="grid_random", budget=36) == iso
    assert _values(sweep, variant="grid_control", placement="grid_even", budget=36) == iso


# ----------------------------------------------------------------------------------------------------------- errors

def test_clear_errors(models, canvas, tmp_path):
    quiet = dict(device="cpu", log=lambda *_: None)
    with pytest.raises(ValueError, match="evaluation.priors: unknown placement 'diagonal'.*accepted: .*uniform"):
        evaluate_models({"parent": models["vit"]}, canvas, _settings(priors=["uniform", "diagonal"]), **quiet)
    with pytest.raises(ValueError, match="accepts settings"):
        evaluate_models({"parent": models["vit"]}, canvas, _settings(priors=[{"name": "center", "sharp": 1}]), **quiet)
    with pytest.raises(ValueError, match="budget 50 > 36 grid patches of model 'parent'"):
        evaluate_models({"parent": models["vit"]}, canvas, _settings(extra_budgets=[50]), **quiet)
    # SPoT itself accepts any budget: the same budget without the grid baselines passes validation
    with pytest.raises(ValueError, match="budget 50 > 36 grid patches of model 'grid_control'"):
        evaluate_models({"grid_control": models["ctrl"]}, canvas, _settings(extra_budgets=[50], patchdropout=False),
                        **quiet)
    with pytest.raises(ValueError, match="budget 0 < 1"):
        evaluate_models({"parent": models["vit"]}, canvas, _settings(budgets=[0]), **quiet)
    with pytest.raises(ValueError, match="MAE checkpoint"):
        evaluate_models({"parent": models["vit"], "mae": models["mae"]}, canvas, _settings(), **quiet)
    with pytest.raises(FileNotFoundError, match="'gone'.*not found"):
        evaluate_models({"gone": tmp_path / "gone.safetensors"}, canvas, _settings(), **quiet)
    with pytest.raises(ValueError, match="each query would find itself"):
        evaluate_models({"parent": models["vit"]}, canvas, _settings(knn=KnnSettings(train_split="test")), **quiet)
    with pytest.raises(ValueError, match="grid_placements"):
        evaluate_models({"parent": models["vit"]}, canvas, _settings(grid_placements=["isotropic"]), **quiet)


# ------------------------------------------------------------------------------------------------ the command line

def test_command_line_run_is_reproducible_and_records_provenance(models, canvas, tmp_path):
    import pandas as pd
    import yaml

    preset = tmp_path / "quick.yaml"
    preset.write_text(yaml.safe_dump({"evaluation": {
        "priors": ["gaussian", "center"], "budgets": [5], "extra_budgets": [], "seeds": [7], "batch_size": 8,
        "grid_placements": [], "knn": {"train_limit": 30, "k": 3}}}))
    frames = []
    for run in ("a", "b"):
        assert spot_command("evaluate", "--config", "config.yaml", "--config", str(preset), "--backbone", "cls_in1k",
                                  "--model", f"parent={models['vit']}", "--model", f"spot={models['spot']}",
                                  "--data", str(canvas), "--out", str(tmp_path / run / "eval.csv"),
                                  "--limit", "20", "--device", "cpu", "--threads", "1") == 0
        frames.append(pd.read_csv(tmp_path / run / "eval.csv"))
    a, b = frames
    # config.yaml snaps, and runs on grid-trained models, Isotropic and Center only; of this preset's two priors:
    # spot: gaussian (placed) + center (placed, snapped); parent: center (placed, snapped) + PatchDropout — × 2 metrics
    assert len(a) == (3 + 3) * 2
    assert a.equals(b)
    assert (a.n_images == 20).all() and set(a.seed.dropna()) == {7} and set(a.backbone) == {"cls_in1k"}
    assert tuple(a.columns) == COLUMNS  # the outcomes survive the CSV
    assert all(decode_outcomes(r.outcomes, r.n_images).sum() == r.n_correct for r in a.itertuples())
    assert set(a.method[a.variant == "spot"]) == {"spot"}  # no grid placements: not a grid control
    assert set(a.placement[a.positions == "snapped"]) == {"center"}
    meta = json.loads((tmp_path / "a" / "eval.json").read_text())
    prov = meta["provenance"]
    assert prov["config"]["evaluation"]["limit"] == 20 and prov["config"]["evaluation"]["knn"]["train_limit"] == 30
    assert prov["config"]["saliency"]["source"] == "article_mask"
    assert {"checkpoint:parent", "checkpoint:spot", "data:manifest"} <= set(prov["inputs"])
    assert meta["wall_time_s"] > 0 and prov["device"]["type"] == "cpu"
    with pytest.raises(ValueError, match="=PATH"):
        spot_command("evaluate", "--config", "config.yaml", "--model", models["vit"], "--data", canvas,
                     "--out", tmp_path / "x.csv")


def test_cpu_description_names_model_and_vector_extension():
    from spot.provenance import parse_cpuinfo

    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 49\n"
            "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
            "processor\t: 1\nmodel name\t: other\nflags\t\t: avx512f\n")
    d = parse_cpuinfo(text)
    assert d == {"cpu": "AMD EPYC 7B12 (family 23, model 49)", "isa": "avx2"}
    assert parse_cpuinfo("processor : 0\nflags : avx512f avx2\n")["isa"] == "avx512f"
    assert "isa" not in parse_cpuinfo("processor : 0\nflags : sse2\n")


def test_a_deterministic_layout_is_placed_once_per_pass_with_the_same_rows(models, canvas, monkeypatch):
    import spot.experiments.evaluate as ev

    s = _settings(priors=["isotropic", "uniform"], budgets=[9], extra_budgets=[], limit=40, batch_size=8,
                  seeds=[0], snapped=True, patchdropout=False)
    placed = []
    real_place = ev.place
    monkeypatch.setattr(ev, "place", lambda spec, *a, **k: placed.append(spec.name) or real_place(spec, *a, **k))
    kept = evaluate_models({"spot": models["spot"]}, canvas, s, device="cpu", log=lambda *_: None)
    assert placed.count("isotropic") == 1 and placed.count("uniform") > 2  # uniform: per batch of each pass
    tokens = ev._Measurement.tokens

    def fresh(self, *a):
        self._layouts.clear()  # what every batch did before: place the layout again
        return tokens(self, *a)

    monkeypatch.setattr(ev._Measurement, "tokens", fresh)
    assert evaluate_models({"spot": models["spot"]}, canvas, s, device="cpu", log=lambda *_: None) == kept

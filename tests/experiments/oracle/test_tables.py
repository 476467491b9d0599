"""The oracle's tables (spot.experiments.oracle.tables): per-image tallies, the tables against hand computations, Table 5's kNN,
and the controls."""
import numpy as np
import pytest
import torch

from spot import grid_positions, sample_positions, snap_to_grid
from spot.data.evaluation import EvalData
from spot.experiments.oracle import oracle_experiments, oracle_search, phase_scrambled, saliency_scores
from spot.experiments.oracle.tables import BLANK_STREAM, PROPORTIONS, _Tally
from spot.core.placement import ImageStreams
from spot.stats import decode_outcomes
from spot.train import train

from .common import (
    CONTROLS, ImageOnly, MEAN, PositionsOnly, SIZE, SMALL, STD, _check_proportions, _four_class_data, _outcomes,
    _settings, _value, load_classifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tally_keeps_per_image_outcomes_in_batch_order():
    t = _Tally(is_proportion=lambda key: key == "p")
    t.add("p", torch.tensor([True, False]))
    t.add("p", torch.tensor([1.0, 1.0, 0.0]))
    t.add("x", torch.tensor([[0.5, 1.5]]))  # per token: a mean, no outcomes, one image: no interval
    p = t.columns("p")
    assert decode_outcomes(p["outcomes"], 5).tolist() == [True, False, True, True, False]
    assert (p["value"], p["n_images"], p["n_correct"]) == (60.0, 5, 3) and p["ci_low"] < 60.0 < p["ci_high"]
    x = t.columns("x")
    assert (x["value"], x["n_images"], x["n_correct"], x["outcomes"]) == (1.0, 1, None, None)
    assert np.isnan(x["ci_low"]) and np.isnan(x["ci_high"])
    # per token with NaN left out: the mean over the kept tokens, its interval over images (clustered), not tokens
    t.add("y", torch.tensor([[1.0, 1.0, float("nan")], [3.0, float("nan"), float("nan")], [2.0, 4.0, 6.0]]))
    y = t.columns("y")
    assert y["value"] == pytest.approx(17 / 6) and y["n_images"] == 3
    from spot.stats import Z
    sums, counts = np.array([2.0, 3.0, 12.0]), np.array([2, 1, 3])
    half = Z * np.sqrt(3 / 2 * ((sums - 17 / 6 * counts) ** 2).sum()) / 6
    assert (y["ci_low"], y["ci_high"]) == pytest.approx((17 / 6 - half, 17 / 6 + half))
    assert half > Z * np.std([1, 1, 3, 2, 4, 6], ddof=1) / np.sqrt(6)  # wider than if the 6 tokens were independent
    with pytest.raises(ValueError, match="one 0/1 value per image"):
        t.add("p", torch.ones(2, 3))
    with pytest.raises(ValueError, match="one 0/1 value per image"):
        t.add("p", torch.tensor([0.5]))


@pytest.fixture(scope="module")
def tables(checkpoints, canvas):
    """Every oracle table of model "a" on 24 test canvases: (model, data, settings, rows, trajectories)."""
    model, (mean, std) = load_classifier(checkpoints["a"])
    assert [list(mean), list(std)] == [MEAN, STD]  # the record's normalisation
    s = _settings()
    data = EvalData.open(canvas, "test", mean=mean, std=std, limit=s.limit)
    rows, traj = oracle_experiments(model, data, s, backbone="a")
    return model, data, s, rows, traj


def test_every_table_on_every_image(tables):
    rows = tables[3]
    assert {r["experiment"] for r in rows} == {"table1", "table2", "table3", "table5", "table6", "controls"}
    assert all(r["n_images"] == 24 for r in rows)
    assert {r["backbone"] for r in rows} == {"a"} and {r["variant"] for r in rows} == {"spot"}
    # every proportion row carries its per-image outcomes (the blank images' too), no other row does
    assert _check_proportions(rows, PROPORTIONS) == {"acc1", "blank_acc1", "target_rate", "target_rate_init"}


def test_table1_matches_a_search_by_hand(tables):
    """Oracle from Isotropic at 4 tokens: accuracy at the subpixel and at the snapped positions, displacement."""
    model, data, s, rows, _ = tables
    x, y = data.images, data.labels
    init = sample_positions("isotropic", 4, len(y), (SIZE, SIZE))
    grid = grid_positions((SIZE, SIZE), 8)
    for st in s.search_settings():
        final = torch.cat([oracle_search(model, x[i:i + 10], y[i:i + 10], init[:1], st.lr, st.steps)
                           for i in range(0, 24, 10)])
        snapped = snap_to_grid(final, (SIZE, SIZE), 8)
        assert (snapped[..., None, :] == grid).all(-1).any(-1).all()  # snapped tokens sit on grid-cell centres
        with torch.no_grad():
            hits = (model(x, final).argmax(-1) == y).numpy()
            acc_snap = 100 * (model(x, snapped).argmax(-1) == y).double().mean().item()
        key = dict(experiment="table1", placement="spot_on", setting=st.label, metric="acc1")
        assert _value(rows, positions="placed", **key) == pytest.approx(100 * hits.mean())
        assert np.array_equal(_outcomes(rows, positions="placed", **key), hits)  # each image's, in the subset's order
        assert _value(rows, positions="snapped", **key) == pytest.approx(acc_snap)
        move = ((final - init) * SIZE).norm(dim=-1).mean().item()
        assert _value(rows, experiment="table1", setting=st.label, metric="displacement_px") == pytest.approx(move)


def test_derived_metrics_are_what_they_say(tables):
    """Table 2's oracle gain for every setting, its seeds, Table 6's drops and Table 5's link to Table 1."""
    _, _, s, rows, _ = tables
    for prior in SMALL["priors"]:
        spot = _value(rows, experiment="table2", placement=prior, init="", metric="acc1")
        for st in s.search_settings():
            on = _value(rows, experiment="table2", placement="spot_on", init=prior, setting=st.label, metric="acc1")
            assert _value(rows, experiment="table2", init=prior, setting=st.label,
                          metric="oracle_delta") == pytest.approx(on - spot)
    assert [r["seed"] for r in rows if r["experiment"] == "table2" and r["metric"] == "acc1"
            and r["init"] == ""] == [0, None, None]  # seeds on the stochastic priors' rows only (Salient: none)
    iso = _value(rows, experiment="table6", placement="isotropic", metric="acc1")
    assert iso == _value(rows, experiment="table1", placement="isotropic", positions="placed", metric="acc1")
    for placement, start in (("spot_on_ascent", "isotropic"), ("spot_on_random_label", "isotropic"),
                             ("background", ""), ("boundary", "")):
        acc = _value(rows, experiment="table6", placement=placement, init=start, metric="acc1")
        assert _value(rows, experiment="table6", placement=placement, init=start,
                      metric="drop_vs_isotropic") == pytest.approx(iso - acc)
    # Table 5's SPoT-ON at the sparse budget is Table 1's main setting
    assert _value(rows, experiment="table5", placement="spot_on", budget=4, metric="acc1") == \
        _value(rows, experiment="table1", placement="spot_on", positions="placed", setting="lr=0.03,steps=3",
               metric="acc1")


def test_table3_matches_eq5_by_hand(tables):
    """Eq. 5 per trajectory (token), averaged over those with an initial score > 0."""
    from spot.experiments.saliency import SaliencySettings, saliency_maps

    model, data, s, rows, _ = tables
    x, y = data.images, data.labels
    maps = saliency_maps(data, data.index, SaliencySettings())
    main = s.search_settings()[s.main_setting]
    for b in SMALL["budgets"]:
        start = sample_positions("isotropic", b, 1, (SIZE, SIZE))
        final = torch.cat([oracle_search(model, x[i:i + 10], y[i:i + 10], start, main.lr, main.steps)
                           for i in range(0, 24, 10)])
        before, after = saliency_scores(maps, start.expand_as(final), 8), saliency_scores(maps, final, 8)
        kept = before > 0
        gains = 100 * (after[kept] - before[kept]) / before[kept]
        s0 = _value(rows, experiment="table3", budget=b, metric="saliency_init")
        s1 = _value(rows, experiment="table3", budget=b, metric="saliency_final")
        assert s0 == pytest.approx(before.double().mean().item()) and 0 < s0 < 1
        assert _value(rows, experiment="table3", budget=b, metric="rsg") == pytest.approx(gains.double().mean().item())
        assert _value(rows, experiment="table3", budget=b, metric="rsg_median") == \
            pytest.approx(float(np.median(gains.double().numpy())))
        assert _value(rows, experiment="table3", budget=b, metric="rsg_ratio_of_means") == \
            pytest.approx(100 * (s1 - s0) / s0)
        assert _value(rows, experiment="table3", budget=b, metric="rsg_zero_init") == \
            pytest.approx(100 * (~kept).double().mean().item())
        assert (~kept).any() and kept.any()  # background tokens are skipped, article tokens counted


def test_figure4_trajectories_start_at_the_isotropic_init(tables):
    """The first 3 images, every step."""
    _, data, _, _, traj = tables
    init = sample_positions("isotropic", 4, 3, (SIZE, SIZE))
    assert traj["positions"].shape == (4, 3, 4, 2) and traj["positions"].dtype == np.float32
    assert np.array_equal(traj["indices"], data.index[:3].numpy())
    assert np.array_equal(traj["labels"], data.labels[:3].numpy())
    assert np.allclose(traj["positions"][0], init.numpy())


def test_table5_knn_classifies_final_positions_against_the_isotropic_bank(checkpoints, canvas):
    """Table 5's SPoT-ON kNN (our procedure): pooled features at the oracle's final positions against the bank of
    evaluation.knn encoded at the Isotropic positions of the same budget; the start's kNN beside it."""
    from spot.experiments.evaluate import KnnSettings, knn_classify
    from spot.experiments.oracle import KnnBank

    model, (mean, std) = load_classifier(checkpoints["a"])
    s = _settings(budgets=[4], priors=["isotropic"], trajectories={"images": 0})
    data = EvalData.open(canvas, "test", mean=mean, std=std, limit=s.limit)
    knn = KnnSettings(k=5, temperature=0.07, train_split="train", train_limit=60, chunk_size=7)
    bank_data = EvalData.open(canvas, "train", mean=mean, std=std, limit=60)
    assert bank_data.subset["kind"] == "stratified" and bank_data.n == 60
    rows, _ = oracle_experiments(model, data, s, tables=("5",), knn_bank=KnnBank(bank_data, knn, batch_size=25))

    start = sample_positions("isotropic", 4, 1, (SIZE, SIZE))
    main = s.search_settings()[s.main_setting]
    final = torch.cat([oracle_search(model, data.images[i:i + 10], data.labels[i:i + 10], start, main.lr, main.steps)
                       for i in range(0, 24, 10)])
    with torch.no_grad():
        bank = model.pooled_features(bank_data.images, start)
        for placement, positions in (("isotropic", start), ("spot_on", final)):
            queries = model.pooled_features(data.images, positions)
            preds = knn_classify(bank, bank_data.labels, queries, k=5, temperature=0.07, num_classes=10)
            expected = 100 * (preds == data.labels).double().mean().item()
            assert _value(rows, experiment="table5", placement=placement, metric="knn") == pytest.approx(expected)
    # without a bank there are no kNN rows
    rows, _ = oracle_experiments(model, data, s, tables=("5",))
    assert {r["metric"] for r in rows} == {"acc1"}


def test_controls_a_positions_only_model_is_fully_steerable(canvas):
    data = _four_class_data(canvas)
    rows, _ = oracle_experiments(PositionsOnly(), data, _settings(**CONTROLS), tables=("controls",))
    assert {r["experiment"] for r in rows} == {"controls"}
    for b in (4, 9):
        def v(placement, metric):
            return _value(rows, placement=placement, budget=b, metric=metric)

        assert v("spot_on_random_target", "target_rate") == 100.0  # every random target reached …
        assert v("spot_on_random_target", "target_rate_init") <= 40.0  # … from one class for all at the start
        assert v("spot_on_random_target", "acc1") == 0.0  # a wrong label reached means the true one is lost
        assert v("spot_on", "acc1") == 100.0  # the oracle "finds" every true label …
        assert v("spot_on", "blank_acc1") == 100.0  # … on blank images as well: no evidence needed
        assert _outcomes(rows, placement="spot_on", budget=b, metric="blank_acc1").all()  # (each image's)
        assert v("isotropic", "blank_acc1") == v("isotropic", "acc1")  # (the start ignores the image too)
        assert v("spot_on_label_free", "acc1") < 50.0  # the label-free search cannot know the label
    seeds = {r["placement"]: r["seed"] for r in rows}
    assert seeds["spot_on_random_target"] == 0 and seeds["spot_on"] is None and seeds["spot_on_label_free"] is None


def test_controls_a_model_that_ignores_positions_is_not_steerable(canvas):
    data = _four_class_data(canvas)
    model = ImageOnly()
    canvas_blank = dict(CONTROLS, controls={"blank": "background"})
    rows, _ = oracle_experiments(model, data, _settings(**canvas_blank), tables=("controls",))
    with torch.no_grad():
        pred = model(data.images, torch.zeros(1, 4, 2)).argmax(-1)
        blank_pred = model(torch.full_like(data.images[:1], -MEAN[0] / STD[0]), torch.zeros(1, 4, 2)).argmax(-1)
    acc = 100 * (pred == data.labels).double().mean().item()
    for b in (4, 9):
        def v(placement, metric):
            return _value(rows, placement=placement, budget=b, metric=metric)

        assert v("spot_on_random_target", "target_rate") == v("spot_on_random_target", "target_rate_init") < 100.0
        assert v("spot_on", "acc1") == v("spot_on_label_free", "acc1") == v("isotropic", "acc1") == \
            pytest.approx(acc)
        # blank images: the background canvas, one prediction for all, right for the images of that class only
        expected = 100 * (data.labels == blank_pred).double().mean().item()
        assert v("spot_on", "blank_acc1") == v("isotropic", "blank_acc1") == pytest.approx(expected)
    # the random targets are never the true label, and the draw is the image's own (independent of the batch size)
    from spot.experiments.oracle import random_other_labels

    labels = torch.arange(4).repeat(50)
    draws = random_other_labels(labels, 4, torch.Generator().manual_seed(0))
    assert (draws != labels).all() and set(draws.tolist()) == {0, 1, 2, 3}
    again, _ = oracle_experiments(model, data, _settings(**canvas_blank, batch_size=7), tables=("controls",))
    assert again == rows


def test_scrambled_blank_images_keep_the_spectrum_and_lose_the_object(canvas):
    data = EvalData.open(canvas, "test", mean=MEAN, std=STD, limit=12)
    images, streams = data.images, ImageStreams(BLANK_STREAM, 0, "test")
    blank = phase_scrambled(images, data.index, streams)
    assert blank.shape == images.shape and blank.dtype == images.dtype
    # each image keeps its per-channel mean and amplitude spectrum (float32 rounding) …
    assert torch.allclose(blank.mean((-2, -1)), images.mean((-2, -1)), atol=1e-5)
    spectrum = torch.fft.fft2(images.double()).abs()
    assert torch.allclose(torch.fft.fft2(blank.double()).abs(), spectrum, atol=1e-3 * spectrum.max().item())
    # … and loses the object: it is uncorrelated with its original, and the blank images all differ
    flat, original = blank.flatten(1).double(), images.flatten(1).double()
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(flat.numpy(), original.numpy())]
    assert max(abs(c) for c in corr) < 0.5
    others = ~torch.eye(len(flat), dtype=torch.bool)  # two independent scrambles lie ≈ √2·σ·√pixels apart
    assert torch.cdist(flat, flat)[others].min() > 0.5 * flat.std(dim=1).min() * flat.shape[1] ** 0.5
    # the image's own stream: the same blank image whatever the batch it is in
    parts = [phase_scrambled(images[i:i + 5], data.index[i:i + 5], streams) for i in range(0, 12, 5)]
    assert torch.equal(torch.cat(parts), blank)
    assert not torch.equal(phase_scrambled(images, data.index, ImageStreams(BLANK_STREAM, 1, "test")), blank)


def test_scrambled_blank_control_classifies_each_images_own_blank(canvas):
    """The default blank control: every image its own phase-scrambled version, so the blank rows are a real
    sample of per-image outcomes (a model ignoring positions: its prediction on each scrambled image)."""
    data = _four_class_data(canvas)
    model, s = ImageOnly(), _settings(**CONTROLS)
    assert s.controls.blank == "scrambled"
    rows, _ = oracle_experiments(model, data, s, tables=("controls",))
    blank = phase_scrambled(data.images, data.index, ImageStreams(BLANK_STREAM, s.seed, data.split))
    with torch.no_grad():
        hits = (model(blank, torch.zeros(1, 4, 2)).argmax(-1) == data.labels).numpy()
    assert 0 < hits.sum() < len(hits)
    for b in (4, 9):
        for placement in ("isotropic", "spot_on"):
            assert np.array_equal(_outcomes(rows, placement=placement, budget=b, metric="blank_acc1"), hits)
    assert _check_proportions(rows, PROPORTIONS) == {"acc1", "blank_acc1", "target_rate", "target_rate_init"}

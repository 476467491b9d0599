"""Token pruning (spot.core.pruning, spot.prune): SPOT-AD and its baselines on timm ViTs and SPoT models."""
import math

import numpy as np
import pytest
import timm
import torch

import spot
from spot.core.pruning import PRUNING_METHODS, attention_statistics, default_stages, keep_counts, matching_r, prune
from spot.experiments.throughput import count_gflops

METHODS = ["spot_ad", "dynamicvit", "heuristic", "evit", "tome"]


@pytest.fixture(scope="module")
def deit():
    torch.manual_seed(0)
    # 12 blocks (the seed's stage rule: blocks 3, 6, 9), 4×4 = 16 patches, CLS pooling
    return timm.create_model("deit_tiny_patch16_224", img_size=64, num_classes=10, depth=12).eval()


@pytest.fixture(scope="module")
def avg_vit():
    torch.manual_seed(1)
    return timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10, depth=4, global_pool="avg",
                             fc_norm=True).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _settings(method, keep_ratio):
    return {"r": matching_r(16, 12, keep_ratio)} if method == "tome" else {}


def test_registry_has_the_papers_methods():
    assert set(METHODS) <= set(PRUNING_METHODS)
    assert default_stages(12) == (3, 6, 9) and default_stages(16) == (4, 8, 12) and default_stages(4) == (1, 2, 3)


@pytest.mark.parametrize("method", METHODS)
def test_keep_ratio_one_gives_the_unpruned_logits(deit, avg_vit, images, method):
    for model in (deit, avg_vit):
        with torch.no_grad():
            expected = model(images)
            pruned = prune(model, method, keep_ratio=1.0).eval()
            torch.testing.assert_close(pruned(images), expected, atol=1e-5, rtol=1e-5)
        assert pruned.token_counts == [17] * len(model.blocks)


@pytest.mark.parametrize("method", METHODS)
def test_fused_attention_views_equal_the_explicit_map(deit, avg_vit, images, method, monkeypatch):
    """A method that reads only the CLS row or no map runs its blocks on fused SDPA (ToMe's log-size bias as the
    mask) and gives what the explicit map gives; only SPOT-AD's observed blocks compute the whole map."""
    model = avg_vit if method == "tome" else deit
    extra = {"prop_attn": True} if method == "tome" else {}  # on: the sizes as SDPA's mask (off: none, below)
    pruned = prune(model, method, keep_ratio=0.7, **_settings(method, 0.7) if model is deit else extra).eval()
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(k.get("attn_mask") is not None) or sdpa(*a, **k))
    with torch.no_grad():
        fused = pruned(images)
        fused_counts, fused_calls = list(pruned.token_counts), list(calls)
        monkeypatch.setattr(pruned.method, "view", lambda block: "map")
        calls.clear()
        explicit = pruned(images)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    depth = len(model.blocks)
    hooked = [i for i in range(depth) if pruned.method.observes(i) or
              pruned.method.reduces(i) and pruned.method.position == "attention"]  # DynamicViT: before the block
    assert pruned.token_counts == fused_counts
    assert len(calls) == depth - len(hooked)  # forced to the explicit map, only the blocks without hooks use SDPA
    if method == "spot_ad":  # blocks up to the last stage observe the whole map
        assert len(fused_calls) == depth - (pruned.method.stages[-1] + 1)
    else:
        assert len(fused_calls) == depth
    if method == "tome":  # every block carries the token sizes as SDPA's additive mask (proportional attention)
        assert fused_calls == [True] * depth
        calls.clear()
        with torch.no_grad():  # the average-pooled model's default, as the authors' MAE patch: no size mask
            prune(model, method, keep_ratio=0.7)(images)
        assert calls == [False] * depth


def test_inference_token_counts_follow_the_stated_schedule(deit, images):
    n0, rho = 16, 0.7
    stated = keep_counts(n0, rho, 3)
    assert stated == [math.ceil(0.7 * 16), math.ceil(0.49 * 16), math.ceil(0.343 * 16)] == [12, 8, 6]
    for method in ("spot_ad", "heuristic"):
        pruned = prune(deit, method, keep_ratio=rho).eval()
        with torch.no_grad():
            pruned(images)
        # a stage prunes after its block's attention: the next block is the first to see fewer tokens
        expected = [17] * 4 + [1 + stated[0]] * 3 + [1 + stated[1]] * 3 + [1 + stated[2]] * 2
        assert pruned.token_counts == expected, method
    dynamicvit = prune(deit, "dynamicvit", keep_ratio=rho).eval()
    with torch.no_grad():
        dynamicvit(images)
    # DynamicViT prunes before the stage block, keeping int(ρ^k·n0) (its authors): the stage block runs on them
    kept = [int(16 * 0.7), int(16 * 0.7 ** 2), int(16 * 0.7 ** 3)]
    assert kept == [11, 7, 5] and dynamicvit.token_counts == [17] * 3 + [1 + kept[0]] * 3 + [1 + kept[1]] * 3 + \
        [1 + kept[2]] * 3
    evit = prune(deit, "evit", keep_ratio=rho, fuse=False).eval()
    with torch.no_grad():
        evit(images)
    n1 = math.ceil(0.7 * 16); n2 = math.ceil(0.7 * n1); n3 = math.ceil(0.7 * n2)  # noqa: E702 — compounding
    assert evit.token_counts == [17] * 4 + [1 + n1] * 3 + [1 + n2] * 3 + [1 + n3] * 2
    fused = prune(deit, "evit", keep_ratio=rho).eval()  # the default: the dropped tokens fused into one more
    with torch.no_grad():
        fused(images)
    f1 = math.ceil(0.7 * 16); f2 = math.ceil(0.7 * (f1 + 1)); f3 = math.ceil(0.7 * (f2 + 1))  # noqa: E702
    assert fused.token_counts == [17] * 4 + [2 + f1] * 3 + [2 + f2] * 3 + [2 + f3] * 2
    tome = prune(deit, "tome", r=1).eval()
    with torch.no_grad():
        tome(images)
    assert tome.token_counts == [17 - i for i in range(12)]


def test_training_masks_are_hierarchical_keep_cls_and_remove_nothing(deit, images):
    torch.manual_seed(0)
    pruned = prune(deit, "spot_ad", keep_ratio=0.6).train()
    logits = pruned(images)
    state = pruned.state
    assert pruned.token_counts == [17] * 12  # masks act through attention, no token leaves in training
    assert len(state.decisions) == 3
    for earlier, later in zip(state.decisions, state.decisions[1:]):
        assert torch.all(later <= earlier)  # a dropped token stays dropped
    assert torch.all(state.policy[:, 0] == 1)  # CLS always kept
    assert set(torch.unique(state.decisions[-1]).tolist()) <= {0.0, 1.0}
    # the hard masks are differentiable (straight-through): gradients reach the predictors
    logits.sum().backward()
    grads = [p.grad for p in pruned.method.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    pruned.zero_grad(set_to_none=True)


def _reference_statistics(A, prefix, keep):
    """A direct, loop-by-loop computation of Eq. 9 for one image and head, over the kept tokens."""
    kept = [t for t in range(A.shape[-1] - prefix) if keep[t]]
    N = len(kept) + prefix
    out = []
    for t in range(A.shape[-1] - prefix):
        row = [float(A[prefix + t, prefix + j]) for j in kept]
        col = [float(A[prefix + i, prefix + t]) for i in kept]
        rm, cm = sum(row) / len(row), sum(col) / len(col)
        out.append([float(A[0, prefix + t]) * N, float(A[prefix + t, 0]) * N, rm * N, cm * N,
                    sum((v - rm) ** 2 for v in row) / len(row) * N * N,
                    sum((v - cm) ** 2 for v in col) / len(col) * N * N])
    return torch.tensor(out)


def test_attention_statistics_equal_a_direct_computation():
    g = torch.Generator().manual_seed(3)
    A = torch.rand(2, 3, 7, 7, generator=g, dtype=torch.float64).softmax(-1)  # 1 CLS + 6 patches, 3 heads
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 1]], dtype=torch.float64)
    stats = attention_statistics(A, prefix=1, keep=keep)
    assert stats.shape == (2, 6, 3, 6)
    for b in range(2):
        for h in range(3):
            torch.testing.assert_close(stats[b, :, h], _reference_statistics(A[b, h], 1, keep[b]).double())


def test_running_moments_are_the_mean_and_variance_over_blocks(deit, images):
    from spot.core.pruning import RunningMoments, TokenState

    maps = [torch.rand(2, 3, 5, 5).softmax(-1) for _ in range(3)]
    state = TokenState.start(torch.zeros(2, 5, 8), prefix=1)
    for A in maps:
        RunningMoments.update(state, A)
    mean, var = RunningMoments.mean_and_variance(state)
    stacked = torch.stack(maps)
    torch.testing.assert_close(mean, stacked.mean(0))
    torch.testing.assert_close(var, stacked.var(0, unbiased=False), atol=1e-6, rtol=1e-5)
    # pruning gathers the memory with the tokens (rows and columns)
    state.keep(torch.zeros(2, 5, 8), torch.tensor([[0, 2], [1, 3]]))
    mean2, _ = RunningMoments.mean_and_variance(state)
    rows = torch.tensor([0, 1, 3])
    torch.testing.assert_close(mean2[0], stacked.mean(0)[0][:, rows][:, :, rows])


def _evit_reference(vit, images, keep_ratio, stages=(3, 6, 9)):
    """EViT written out directly: timm blocks, explicit attention, top-k of the head-averaged CLS row at the stages."""
    x = vit._pos_embed(vit.patch_embed(images))
    for i, blk in enumerate(vit.blocks):
        attn = blk.attn
        h = blk.norm1(x)
        B, N, C = h.shape
        qkv = attn.qkv(h).reshape(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1)
        x = x + attn.proj((a @ v).transpose(1, 2).reshape(B, N, C))
        if i in stages:
            cls = a[:, :, 0, 1:].mean(1)
            k_keep = math.ceil(keep_ratio * (N - 1))
            idx = cls.topk(k_keep, dim=1).indices.sort(dim=1).values
            x = torch.cat([x[:, :1], torch.stack([x[b, 1:][idx[b]] for b in range(B)])], dim=1)
        x = x + blk.mlp(blk.norm2(x))
    return vit.forward_head(vit.norm(x))


def test_evit_equals_a_straightforward_reference(deit, images):
    with torch.no_grad():
        expected = _evit_reference(deit, images, 0.6)
        got = prune(deit, "evit", keep_ratio=0.6, fuse=False).eval()(images)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_gflops_fall_with_keep_ratio_as_the_token_counts_predict(deit):
    one = torch.randn(1, 3, 64, 64)
    dense = count_gflops(deit, one)
    C, depth = deit.embed_dim, len(deit.blocks)

    def block_gflops(n_attn, n_mlp):  # FlopCounterMode's matrix products, 2 per multiply-add
        return 2 * (n_attn * C * 3 * C + 2 * n_attn * n_attn * C + n_attn * C * C + n_mlp * 8 * C * C) / 1e9

    rest = dense - depth * block_gflops(17, 17)  # patch embedding and head
    previous = dense
    for rho in (0.9, 0.7, 0.5):
        pruned = prune(deit, "heuristic", keep_ratio=rho).eval()
        got = count_gflops(pruned, one)
        with torch.no_grad():
            pruned(one)
        counts = pruned.token_counts + [pruned.token_counts[-1]]
        # the heuristic reads the CLS row of the blocks up to the last stage: one more q·kᵀ row there (fused SDPA
        # gives the output, the row is computed beside it)
        cls_rows = sum(2 * counts[i] * C for i in range(depth) if pruned.method.observes(i)) / 1e9
        stated = sum(block_gflops(counts[i], counts[i + 1]) for i in range(depth)) + rest + cls_rows
        assert got == pytest.approx(stated, rel=1e-6)
        assert got < previous
        previous = got
    spot_ad = count_gflops(prune(deit, "spot_ad", keep_ratio=0.5).eval(), one)
    assert previous < spot_ad < dense  # the predictor costs something, far less than it saves


def test_pruning_combines_with_spot_positions(deit, images):
    model = spot.SPoTViT.from_timm(deit).eval()
    positions = spot.place("isotropic", 9, spot.ImageBatch((64, 64), 3))
    with torch.no_grad():
        expected = model(images, positions)
        torch.testing.assert_close(prune(model, "spot_ad", keep_ratio=1.0).eval()(images, positions), expected,
                                   atol=1e-5, rtol=1e-5)
        pruned = prune(model, "spot_ad", keep_ratio=0.7).eval()
        pruned(images, positions)
    n = keep_counts(9, 0.7, 3)  # counts follow the budget the SPoT model was given
    assert pruned.token_counts == [10] * 4 + [1 + n[0]] * 3 + [1 + n[1]] * 3 + [1 + n[2]] * 2


def test_tome_conserves_sizes_and_pools_by_size(avg_vit, images):
    pruned = prune(avg_vit, "tome", r=3).eval()
    with torch.no_grad():
        pruned(images)
    size = pruned.state.size[:, 1:, 0]
    assert pruned.token_counts == [17, 14, 11, 8]
    torch.testing.assert_close(size.sum(1), torch.full((3,), 16.0))  # every patch is in exactly one token


def test_state_dict_is_the_models_plus_the_methods(deit):
    pruned = prune(deit, "spot_ad")
    keys = pruned.state_dict().keys()
    assert {k[len("model."):] for k in keys if k.startswith("model.")} == set(deit.state_dict())
    assert any(k.startswith("method.predictors.2.") for k in keys)
    assert not any(k.startswith("method.predictors.3.") for k in keys)
    shared = prune(deit, "spot_ad", shared=True)
    assert len(shared.method.predictors) == 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="prune_me"), "unknown pruning method 'prune_me'; accepted: spot_ad"),
    (dict(method="evit", keep_ratio=0.0), "keep_ratio must be a number in (0, 1]"),
    (dict(method="evit", keep_ratio=1.5), "keep_ratio must be a number in (0, 1]"),
    (dict(method="evit", stages=[3, 12]), "stages must be increasing, distinct block numbers in [0, 11]"),
    (dict(method="evit", stages=[6, 3]), "stages must be increasing"),
    (dict(method="evit", r=2), "pruning method 'evit' accepts settings ['fuse'], got ['r']"),
    (dict(method="tome", r=2), "r = 2 merges 24 of 16 patch tokens over 12 blocks, leaving none: r must be ≤ 1"),
    (dict(method="spot_ad", heads="some"), "heads must be 'per_head' or 'averaged'"),
    (dict(method="spot_ad", d_remap=7), "d_remap must be an even width"),
])
def test_bad_arguments_name_the_problem(deit, kwargs, message):
    with pytest.raises(ValueError) as err:
        prune(deit, **kwargs)
    assert message in str(err.value)


def test_non_timm_blocks_are_refused():
    from timm.models.vision_transformer import ResPostBlock

    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, depth=2, block_fn=ResPostBlock)
    with pytest.raises(ValueError, match="block 0 is a ResPostBlock .* token pruning needs timm ViT blocks"):
        prune(vit, "evit")
    with pytest.raises(ValueError, match="takes a timm VisionTransformer or a SPoTViT"):
        prune(torch.nn.Linear(3, 3), "evit")


def test_the_predictor_costs_what_seed_003_reports_for_deit():
    """The predictor (Linear(C,C) remap, E → E/2 → E/4 → 2 with E = C + 18·H) costs 0.129 GMACs on DeiT-S and 0.032
    on DeiT-T at ρ = 0.7 — the seed's stated overheads — measured as SPOT-AD's FLOPs beyond the heuristic's at the
    same token counts."""
    x = torch.zeros(1, 3, 224, 224)
    for name, stated in (("deit_small_patch16_224", 0.129), ("deit_tiny_patch16_224", 0.032)):
        vit = timm.create_model(name).eval()
        overhead = (count_gflops(prune(vit, "spot_ad", 0.7).eval(), x)
                    - count_gflops(prune(vit, "heuristic", 0.7).eval(), x)) / 2  # GMACs (the seed's convention)
        assert overhead == pytest.approx(stated, abs=0.0015), name
        assert overhead / (count_gflops(vit, x) / 2) < 0.05  # under 5 % of the dense model


def test_equal_cost_budget_is_the_closest_in_gflops(deit):
    from spot.experiments.pruning import equal_cost_budget

    model = spot.SPoTViT.from_timm(deit).eval()
    cache = {}
    costs = {}
    for m in range(1, 17):
        positions = spot.place("isotropic", m, spot.ImageBatch((64, 64), 1))
        costs[m] = count_gflops(lambda x, p=positions: model(x, p), torch.zeros(1, 3, 64, 64))
    for target in (0.0, costs[5] * 1.01, (costs[9] + costs[10]) / 2 + 1e-9, costs[16] * 2):
        expected = min(costs, key=lambda m: (abs(costs[m] - target), m))
        assert equal_cost_budget(model, target, 16, (64, 64), 3, cache) == expected
    assert len(cache) < 16  # a bisection, not a scan


# ----------------------------------------------------------------------------------------- spot pruning's acc1 rows

@pytest.fixture(scope="module")
def tiny_parent(tmp_path_factory):
    """A canvas dataset and a tiny grid ViT trained on it (a real timm_vit checkpoint + record; test_evaluate's)."""
    from helpers import make_canvas

    from spot.data.fmnist import CanvasConfig
    from spot.train.recipes import recipe_from_dict
    from spot.train import train

    canvas = make_canvas(tmp_path_factory, 500, 120, CanvasConfig(val_size=100))[0]
    recipe = dict(task="classify", init="scratch",
                  model=dict(backbone="vit_nano_patch8", img_size=48, timm_kwargs=dict(embed_dim=32, depth=4,
                                                                                       num_heads=2)),
                  data=dict(kind="fmnist", mean=[0.1], std=[0.25], limit=400), tokens=dict(mode="grid"), epochs=2,
                  batch_size=50, optimizer=dict(lr=2e-3, betas=[0.9, 0.99], weight_decay=0.05),
                  schedule=dict(warmup_epochs=0.5, min_lr=1e-5), label_smoothing=0.1, eval_batch_size=100)
    out = tmp_path_factory.mktemp("parent") / "parent.safetensors"
    train(recipe_from_dict(recipe, "parent"), data_root=canvas, out=out, state_dir=out.parent / "state",
          log=lambda *_: None, progress=False)
    return canvas, out


def test_pruning_acc1_rows_carry_their_outcomes_and_wilson_interval(tiny_parent, one_thread):
    import pandas as pd

    from spot.weights.checkpoints import load_trained, open_checkpoint
    from spot.data.evaluation import EvalData
    from spot.experiments.evaluate import EvaluationSettings
    from spot.experiments.pruning import COLUMNS, PruningSettings, evaluate_pruning
    from spot.stats import decode_outcomes

    canvas, parent = tiny_parent
    settings = PruningSettings(sweep=[0.3, 0.9], equal_cost=None, batch_size=16)
    rows = evaluate_pruning({"parent": parent}, canvas, settings, EvaluationSettings(limit=40).validate(),
                            backbone="tiny", log=lambda *_: None)
    f = pd.DataFrame(rows)
    assert tuple(f.columns) == COLUMNS
    acc = f[f.metric == "acc1"]
    assert len(acc) == 3  # the dense parent, ToMe at two keep ratios
    for r in acc.itertuples():
        assert decode_outcomes(r.outcomes, r.n_images).sum() == r.n_correct
        assert r.value == 100.0 * r.n_correct / r.n_images
        assert r.ci_low <= r.value <= r.ci_high
        if 0 < r.n_correct < r.n_images:
            assert r.ci_high - r.ci_low > 0
    assert ((acc.n_correct > 0) & (acc.n_correct < acc.n_images)).any()
    # the other metrics leave the four columns empty
    assert f[f.metric != "acc1"][["n_correct", "ci_low", "ci_high", "outcomes"]].isna().all().all()
    # the dense row's outcomes are the parent's per-image correctness, in the data's order
    mean, std = open_checkpoint(parent).normalisation
    data = EvalData.open(canvas, "test", mean=mean, std=std, limit=40)
    with torch.no_grad():
        correct = (load_trained(parent, wrap=False)(data.images).argmax(-1) == data.labels).numpy()
    dense = acc[acc.method == "vit"].iloc[0]
    assert np.array_equal(decode_outcomes(dense.outcomes, dense.n_images), correct)
    assert dense.value == 100.0 * int(correct.sum()) / len(correct)


class _Images:
    """What ``_accuracy`` reads of an EvalData: ``n`` and ``batches(batch_size)`` of (images, labels, indices)."""

    def __init__(self, images, labels):
        self.images, self.labels, self.n = images, labels, len(labels)

    def batches(self, batch_size):
        for start in range(0, self.n, batch_size):
            stop = min(start + batch_size, self.n)
            yield self.images[start:stop], self.labels[start:stop], torch.arange(start, stop)


def test_accuracy_is_per_image_in_data_order_so_rows_compare_paired(deit):
    from scipy.stats import binomtest

    from spot.experiments.pruning import _accuracy
    from spot.stats import decode_outcomes, outcome_columns, paired_difference

    x = torch.randn(24, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    evit = prune(deit, "evit", keep_ratio=0.25).eval()
    with torch.no_grad():
        dense_preds, evit_preds = deit(x).argmax(-1), evit(x).argmax(-1)
    labels = dense_preds.clone()
    labels[::5] = (labels[::5] + 1) % 10  # the dense model is wrong on every fifth image
    data = _Images(x, labels)
    dense, pruned = (_accuracy(net, data, batch_size=5, device="cpu") for net in (deit, evit))
    assert dense.dtype == torch.bool and dense.tolist() == (dense_preds == labels).tolist()
    assert pruned.tolist() == (evit_preds == labels).tolist()
    a, b = outcome_columns(dense.numpy()), outcome_columns(pruned.numpy())
    assert a["value"] == 100.0 * int(dense.sum()) / 24 and 0 < a["n_correct"] < 24
    assert a["value"] != b["value"] and a["outcomes"] != b["outcomes"]  # the pruned model changes some answers
    d = paired_difference(decode_outcomes(a["outcomes"], 24), decode_outcomes(b["outcomes"], 24))
    up, down = int((dense & ~pruned).sum()), int((~dense & pruned).sum())
    assert d.difference == pytest.approx(a["value"] - b["value"])
    assert d.p_value == pytest.approx(binomtest(up, up + down, 0.5).pvalue)

"""The baselines against independent implementations of their authors' algorithms, written here from the authors'
code (their math, not this project's modules), on random-weight timm ViTs: the same logits (within 1e-4) and the
same tokens entering every block.

* ToMe — facebookresearch/ToMe ``tome/merge.py`` (``bipartite_soft_matching``, ``merge_wavg``) with its timm patch
  (``tome/patch/timm.py``: proportional attention, class token protected) and its MAE patch (``tome/patch/mae.py``:
  proportional attention off, the average pool weighted by size over the original patch count).
* EViT — youweiliang/evit ``evit.py`` (``Attention.forward``, ``Block.forward``): after a stage block's attention,
  keep the ⌈ρ·(N − 1)⌉ tokens of highest head-averaged CLS attention (the previous fused token counted among them)
  and, with ``fuse_token`` (every script they released), append the others' CLS-attention-weighted sum.
* DynamicViT — raoyongming/DynamicViT ``VisionTransformerDiffPruning.forward`` (eval) and ``PredictorLG``: at each
  pruning location the predictor reads the block's *input* (LayerNorm → Linear → GELU; the first half per token, the
  second averaged over the kept tokens; [local, global] → MLP → log-softmax), ``int(n0·ρ^k)`` tokens of highest
  keep score are gathered, and the block runs on them.
"""
import math

import pytest
import timm
import torch

from spot.core.pruning import prune


def _tome_attention(attn, x, size, prop_attn):
    """ToMeAttention.forward: timm's attention with log(size) added to the logits; returns (out, keys' head mean)."""
    B, N, C = x.shape
    q, k, v = attn.qkv(x).reshape(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if prop_attn and size is not None:
        logits = logits + size.log()[:, None, None, :, 0]
    out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
    return attn.proj(out), k.mean(1)


def _bipartite_soft_matching(metric, r):
    """tome/merge.py's bipartite_soft_matching with class_token=True, distill_token=False: the merge function."""
    t = metric.shape[1]
    r = min(r, (t - 1) // 2)
    if r <= 0:
        return None
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[..., ::2, :], metric[..., 1::2, :]
    scores = a @ b.transpose(-1, -2)
    scores[..., 0, :] = -math.inf
    node_max, node_idx = scores.max(dim=-1)
    edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
    unm_idx, src_idx = edge_idx[..., r:, :], edge_idx[..., :r, :]
    dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
    unm_idx = unm_idx.sort(dim=1)[0]

    def merge(x, mode):
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        n, t1, c = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(n, t1 - r, c))
        src = src.gather(dim=-2, index=src_idx.expand(n, r, c))
        dst = dst.scatter_reduce(-2, dst_idx.expand(n, r, c), src, reduce=mode)
        return torch.cat([unm, dst], dim=1)

    return merge


def authors_tome(vit, images, r, prop_attn):
    """(logits, the tokens entering each block) of ``vit`` with ToMe applied as the authors' patches do."""
    x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
    T = x.shape[1] - 1
    size, entering = None, []
    for blk in vit.blocks:
        entering.append(x)
        out, metric = _tome_attention(blk.attn, blk.norm1(x), size, prop_attn)
        x = x + blk.ls1(out)
        merge = _bipartite_soft_matching(metric, r)
        if merge is not None:  # merge_wavg
            size = torch.ones_like(x[..., 0, None]) if size is None else size
            x = merge(x * size, "sum")
            size = merge(size, "sum")
            x = x / size
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    x = vit.norm(x)
    if vit.global_pool == "avg":  # tome/patch/mae.py: the pool proportional to token size
        pooled = (x * size)[:, 1:, :].sum(dim=1) / T if size is not None else x[:, 1:].mean(dim=1)
    else:
        pooled = x[:, 0]
    return vit.head(vit.fc_norm(pooled)), entering


def _entering(model, blocks):
    """Record the tokens entering each block (the input of its first norm, in timm's forward and in spot's)."""
    seen = []
    handles = [blk.norm1.register_forward_hook(lambda m, inp, out: seen.append(inp[0])) for blk in blocks]
    return seen, handles


def assert_same_as_authors(pruned, vit, images, expected, theirs, canonical=lambda t: t):
    """``pruned`` gives the authors' logits and the same tokens entering every block (compared after ``canonical``:
    a method that keeps tokens in another order than the authors' compares them as sets)."""
    ours, handles = _entering(pruned, vit.blocks)
    try:
        with torch.no_grad():
            logits = pruned(images)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    assert [t.shape for t in ours] == [t.shape for t in theirs]
    for block, (a, b) in enumerate(zip(ours, theirs)):
        torch.testing.assert_close(canonical(a), canonical(b), atol=1e-4, rtol=0, msg=f"tokens entering {block}")
    return ours


@pytest.mark.parametrize("kind, r", [("deit", 1), ("deit", 2), ("mae", 3), ("mae", 1)])
def test_tome_equals_the_authors(kind, r):
    torch.manual_seed(7)
    if kind == "deit":  # a CLS-token model: the authors' timm patch (proportional attention on)
        vit = timm.create_model("deit_tiny_patch16_224", img_size=64, num_classes=10, depth=6).eval()
    else:  # an average-pooled MAE-style model: their MAE patch (proportional attention off)
        vit = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=10, depth=4, global_pool="avg",
                                fc_norm=True).eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, theirs = authors_tome(vit, images, r, prop_attn=kind == "deit")
    pruned = prune(vit, "tome", r=r).eval()
    assert pruned.method.prop_attn == (kind == "deit")
    assert_same_as_authors(pruned, vit, images, expected, theirs)  # in the authors' order too


def authors_evit(vit, images, keep_rate, stages, fuse_token):
    """(logits, the tokens entering each block) of ``vit`` with EViT as the authors' ``evit.py`` computes it."""
    x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
    entering = []
    for i, blk in enumerate(vit.blocks):
        entering.append(x)
        attn, h = blk.attn, blk.norm1(x)
        B, N, C = h.shape
        q, k, v = attn.qkv(h).reshape(B, N, 3, attn.num_heads, C // attn.num_heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(dim=-1)
        x = x + blk.ls1(attn.proj((a @ v).transpose(1, 2).reshape(B, N, C)))
        left = math.ceil(keep_rate * (N - 1))
        if i in stages and left < N - 1:
            cls_attn = a[:, :, 0, 1:].mean(dim=1)
            _, idx = torch.topk(cls_attn, left, dim=1, largest=True, sorted=True)
            non_cls = x[:, 1:]
            others = torch.gather(non_cls, 1, idx[..., None].expand(-1, -1, C))
            parts = [x[:, :1], others]
            if fuse_token:  # complement_idx: the tokens not kept, in index order
                mask = torch.ones(B, N - 1, dtype=torch.bool).scatter(1, idx, False)
                compl = torch.stack([m.nonzero()[:, 0] for m in mask])
                non_topk = torch.gather(non_cls, 1, compl[..., None].expand(-1, -1, C))
                weights = torch.gather(cls_attn, 1, compl)
                parts.append((non_topk * weights[..., None]).sum(dim=1, keepdim=True))
            x = torch.cat(parts, dim=1)
        x = x + blk.ls2(blk.mlp(blk.norm2(x)))
    return vit.forward_head(vit.norm(x)), entering


def _as_sets(tokens):
    """Each image's tokens in a canonical order (EViT keeps them by attention, spot by index: the same set)."""
    return torch.sort(tokens.sum(dim=-1), dim=-1).values


@pytest.mark.parametrize("fuse", [True, False])
def test_evit_equals_the_authors(fuse):
    torch.manual_seed(11)
    vit = timm.create_model("deit_tiny_patch16_224", img_size=64, num_classes=10, depth=8).eval()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected, theirs = authors_evit(vit, images, 0.6, (1, 3, 5), fuse)
    pruned = prune(vit, "evit", keep_ratio=0.6, stages=(1, 3, 5), **({} if fuse else {"fuse": False})).eval()
    assert pruned.method.fuse is fuse  # fused by default, as the authors' scripts run it
    assert_same_as_authors(pruned, vit, images, expected, theirs, _as_sets)


def authors_predictor(ours, x, policy):
    """PredictorLG.forward with the weights of spot's KeepPredictor ``ours`` (spot concatenates [global, local], the
    authors [local, global]: the first MLP layer's input columns are swapped to match)."""
    h = ours.remap(x)
    B, N, C = h.shape
    local_x = h[:, :, :C // 2]
    global_x = (h[:, :, C // 2:] * policy).sum(dim=1, keepdim=True) / torch.sum(policy, dim=1, keepdim=True)
    h = torch.cat([local_x, global_x.expand(B, N, C // 2)], dim=-1)
    first = ours.mlp[0]
    weight = torch.cat([first.weight[:, C // 2:], first.weight[:, :C // 2]], dim=1)
    h = torch.nn.functional.linear(h, weight, first.bias)
    for layer in list(ours.mlp)[1:]:
        h = layer(h)
    return h


def authors_dynamicvit(vit, predictors, images, ratios, locations):
    """(logits, the tokens entering each block) as DynamicViT's eval forward computes them."""
    x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(images))))
    B, init_n = x.shape[0], x.shape[1] - 1
    prev_decision = torch.ones(B, init_n, 1)
    entering, p_count = [], 0
    for i, blk in enumerate(vit.blocks):
        if i in locations:
            pred_score = authors_predictor(predictors[p_count], x[:, 1:], prev_decision).reshape(B, -1, 2)
            num_keep_node = int(init_n * ratios[p_count])
            keep_policy = torch.argsort(pred_score[:, :, 0], dim=1, descending=True)[:, :num_keep_node]
            now_policy = torch.cat([torch.zeros(B, 1, dtype=keep_policy.dtype), keep_policy + 1], dim=1)
            x = torch.stack([x[b, now_policy[b]] for b in range(B)])  # batch_index_select
            prev_decision = torch.stack([prev_decision[b, keep_policy[b]] for b in range(B)])
            p_count += 1
        entering.append(x)
        x = blk(x)
    return vit.head(vit.norm(x)[:, 0]), entering


@pytest.mark.parametrize("rho", [0.7, 0.5])
def test_dynamicvit_equals_the_authors(rho):
    torch.manual_seed(13)
    vit = timm.create_model("deit_tiny_patch16_224", img_size=80, num_classes=10, depth=12).eval()  # 25 patches
    images = torch.randn(4, 3, 80, 80, generator=torch.Generator().manual_seed(6))
    pruned = prune(vit, "dynamicvit", keep_ratio=rho).eval()
    for p in pruned.method.parameters():  # trained-looking predictors: random, not the zero-ish init
        torch.nn.init.normal_(p, std=0.1)  # no saturated (tied) keep scores
    stages = pruned.method.stages
    with torch.no_grad():
        expected, theirs = authors_dynamicvit(vit, pruned.method.predictors, images,
                                              [rho, rho ** 2, rho ** 3], stages)
    ours = assert_same_as_authors(pruned, vit, images, expected, theirs, _as_sets)
    assert [t.shape[1] - 1 for t in ours] == [25] * 3 + [int(25 * rho)] * 3 + [int(25 * rho ** 2)] * 3 + \
        [max(1, int(25 * rho ** 3))] * 3  # the stage block already runs on the kept tokens

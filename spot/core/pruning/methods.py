"""Token-pruning methods: one class each, registered by name (``PRUNING_METHODS``), the paper's names.

A method decides, at its stage blocks (after attention, before the MLP), which patch tokens go on. It sees the block's
post-softmax attention map — as much of it as its ``view`` says (the whole map, the CLS row, none: fused SDPA
otherwise) — and keys (:func:`~spot.core.pruning.encoder.run_block`) and may keep memory across blocks in the
:class:`~spot.core.pruning.encoder.TokenState`. The shared mechanics live in :class:`ScoredPruning`: a method gives one score
per present patch token; at inference (and always for the non-learned methods) the top ``keep_count`` tokens are
gathered — later blocks really run on fewer tokens — and in training a *learned* method's keep mask is a hard
Gumbel-softmax sample of its predictor, multiplied by the previous stage's (a dropped token stays dropped), that acts
through attention (DynamicViT's scheme; nothing is removed, so gradients reach the predictor).

Methods: ``spot_ad`` (the SPOT-AD paper, with its ablations as settings), ``dynamicvit`` (the same predictor on token
embeddings only), ``heuristic`` (SPOT-AD paper Table 7: CLS attention averaged over heads and blocks so far), ``evit``
(Liang et al. 2022), ``tome`` (Bolya et al. 2023, merging). To add one: subclass :class:`PruningMethod` (or
:class:`ScoredPruning` and write ``scores``), give it a ``name`` and decorate it with :func:`register`; its
keyword settings are its ``__init__`` arguments after the common ones.
"""
from __future__ import annotations

import inspect
import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .catalog import BEFORE_BLOCK, METHOD_SETTINGS
from .encoder import TokenState
from .predictor import KeepPredictor
from .statistics import FEATURES, RunningMoments, attention_statistics

__all__ = ["PRUNING_METHODS", "register", "PruningMethod", "ScoredPruning", "SpotAD", "DynamicViT", "Heuristic",
           "EViT", "ToMe", "default_stages", "keep_counts", "matching_r", "method_settings"]

PRUNING_METHODS: dict[str, type["PruningMethod"]] = {}


def register(cls):
    """Class decorator: make a pruning method available by its ``name`` (``spot.prune(model, method=name)``)."""
    if not cls.name or cls.name in PRUNING_METHODS and PRUNING_METHODS[cls.name] is not cls:
        raise ValueError(f"pruning method {cls.__name__} needs a name of its own, got {cls.name!r}")
    if tuple(method_settings(cls)) != METHOD_SETTINGS.get(cls.name):
        raise ValueError(f"pruning method {cls.name!r}: list its settings {method_settings(cls)} in "
                         f"spot/core/pruning/catalog.py (METHOD_SETTINGS), which configs are checked against")
    if (cls.position == "input") != (cls.name in BEFORE_BLOCK):
        raise ValueError(f"pruning method {cls.name!r}: its position {cls.position!r} disagrees with "
                         f"spot/core/pruning/catalog.py (BEFORE_BLOCK)")
    PRUNING_METHODS[cls.name] = cls
    return cls


def method_settings(cls) -> list[str]:
    """The keyword settings a method accepts (its ``__init__`` arguments after the common ones)."""
    common = set(inspect.signature(PruningMethod.__init__).parameters)
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name not in common and p.kind is inspect.Parameter.KEYWORD_ONLY]


def default_stages(depth: int) -> tuple[int, ...]:
    """0-indexed stage blocks one block after each of the first three quarter marks of the depth (the SPOT-AD paper App.
    6.2): blocks 3, 6, 9 of 12 (the 4th, 7th and 10th), 4, 8, 12 of 16, 1, 2, 3 of 4."""
    return tuple(sorted({max(0, min(depth - 1, q * depth // 4)) for q in (1, 2, 3)}))


def _ceil(x: float) -> int:
    return math.ceil(round(x, 9))  # 0.7 · 10 is 7, not 8


def keep_counts(num_patches: int, keep_ratio: float, stages: int) -> list[int]:
    """Patch tokens kept after each stage when stage k keeps ⌈ρ^k · n0⌉ of the original n0 (ρ_k = ρ^k)."""
    return [max(1, _ceil(keep_ratio ** (k + 1) * num_patches)) for k in range(stages)]


class PruningMethod(nn.Module):
    """Base class. ``observes(block)``: the method needs that block's attention map; ``reduces(block)``: it prunes
    (or merges) there. Both hooks get the :class:`TokenState` and may change it."""

    name: ClassVar[str] = ""
    learned: ClassVar[bool] = False  # a trained predictor (Gumbel masks in training); else hard pruning always
    summary: ClassVar[str] = ""
    # where a stage acts: "attention" — inside its block, after attention and before the MLP (EViT, ToMe, SPOT-AD);
    # "input" — before the block, on its input (DynamicViT: the stage block already runs on the kept tokens)
    position: ClassVar[str] = "attention"

    def __init__(self, *, embed_dim: int, num_heads: int, depth: int, num_patches: int, prefix: int,
                 keep_ratio: float, stages=None):
        super().__init__()
        self.embed_dim, self.num_heads, self.depth = embed_dim, num_heads, depth
        self.num_patches, self.prefix, self.keep_ratio = num_patches, prefix, float(keep_ratio)
        self.stages = tuple(default_stages(depth) if stages is None else stages)

    def extra_repr(self) -> str:
        return f"keep_ratio={self.keep_ratio}, stages={list(self.stages)}"

    def stage_of(self, block: int) -> int | None:
        return self.stages.index(block) if block in self.stages else None

    def begin(self, state: TokenState, x: torch.Tensor) -> None:
        """Called before the first block of every forward pass."""

    def observes(self, block: int) -> bool:
        return False

    def reduces(self, block: int) -> bool:
        return block in self.stages

    def view(self, block: int) -> str:
        """How much of the block's attention map the hooks read: ``"map"`` (the default: all of it, computed
        explicitly), ``"cls"`` (the CLS row) or ``"none"`` — the latter two keep the block on fused SDPA."""
        return "map"

    def observe(self, block: int, state: TokenState, probs, keys, x) -> None:
        pass

    def reduce(self, block: int, state: TokenState, x: torch.Tensor, probs, keys) -> torch.Tensor:
        """Prune or merge the tokens ``x`` at a stage block (``position``: after its attention, with its map and
        keys; or on its input, ``probs`` and ``keys`` None)."""
        raise NotImplementedError

    def settings(self) -> dict:
        """The method's settings as given to :func:`spot.prune` (for checkpoint records)."""
        return {k: getattr(self, k) for k in method_settings(type(self))}


class ScoredPruning(PruningMethod):
    """Prune by one score per present patch token (see the module docs); subclasses write :meth:`scores`."""

    def keep_count(self, stage: int, present: int, state: TokenState) -> int:
        """Stage k keeps ⌈ρ^k · n0⌉ of the n0 patch tokens this forward pass started with (a SPoT model's budget)."""
        return min(present, keep_counts(state.num_patches, self.keep_ratio, stage + 1)[-1])

    def scores(self, stage: int, state: TokenState, x, probs) -> torch.Tensor:
        """(B, n) scores of the present patch tokens — higher is kept; learned methods: (B, n, 2) log-probabilities
        (keep, drop)."""
        raise NotImplementedError

    def reduce(self, block, state, x, probs, keys):
        stage = self.stage_of(block)
        scores = self.scores(stage, state, x, probs)
        if self.learned and self.training:
            keep = F.gumbel_softmax(scores, hard=True)[..., 0]  # straight-through hard sample
            previous = state.patch_policy
            keep = keep if previous is None else keep * previous
            state.policy = torch.cat([keep.new_ones(keep.shape[0], state.prefix), keep], dim=1)[..., None]
            state.decisions.append(keep)
            return x
        if self.learned:
            scores = scores[..., 0]
        k = self.keep_count(stage, scores.shape[1], state)
        keep = scores.topk(k, dim=1, sorted=False).indices.sort(dim=1).values  # kept tokens in their order
        return state.keep(x, keep)


def _split_statistics(features) -> tuple[str, ...]:
    return tuple(f for f in FEATURES if not ((f.endswith("_mean") and "mean" not in features)
                                            or (f.endswith("_var") and "variance" not in features)))


@register
class SpotAD(ScoredPruning):
    """SPOT-AD (the SPOT-AD paper): a per-stage MLP on remapped token embeddings plus per-head attention descriptors of the
    current block (D^A) and of the running mean / variance of the maps so far (D^M, D^Σ).

    Settings (the seed's ablations): ``d_remap`` (token remap width; None = the embedding width, 0 = no token
    features — Figure 5), ``statistics`` (row/column moments used: ``mean`` and/or ``variance`` — Table 2),
    ``dynamics`` (D^M and D^Σ; False: the current block only — Table 2), ``heads`` (``per_head`` or ``averaged``
    descriptors — Table 8), ``shared`` (one predictor for every stage — Table 8), ``attention`` (False: no attention
    descriptors at all: the predictor DynamicViT uses).
    """

    name = "spot_ad"
    learned = True
    summary = "SPOT-AD: learned predictor on token embeddings + attention dynamics (the SPOT-AD paper)"

    predictor_init_std: ClassVar[float | None] = None  # PyTorch's default initialisation of the predictors

    def __init__(self, *, d_remap: int | None = None, statistics=("mean", "variance"), dynamics: bool = True,
                 heads: str = "per_head", shared: bool = False, attention: bool = True, **common):
        super().__init__(**common)
        statistics = tuple(statistics)
        if set(statistics) - {"mean", "variance"}:
            raise ValueError(f"statistics must be a subset of ['mean', 'variance'], got {list(statistics)}")
        if heads not in ("per_head", "averaged"):
            raise ValueError(f"heads must be 'per_head' or 'averaged', got {heads!r}")
        d_remap = self.embed_dim if d_remap is None else int(d_remap)
        if d_remap < 0 or d_remap % 2:
            raise ValueError(f"d_remap must be an even width ≥ 0 (split into global and local halves), got {d_remap}")
        self.d_remap, self.statistics, self.dynamics = d_remap, statistics, bool(dynamics)
        self.heads, self.shared, self.attention = heads, bool(shared), bool(attention)
        self.features = _split_statistics(statistics)
        per_map = len(self.features) * (1 if heads == "averaged" else self.num_heads)
        num_stats = per_map * (3 if self.dynamics else 1) if self.attention else 0
        if d_remap + num_stats < 4:
            raise ValueError(f"the predictor needs at least 4 input features, got d_remap {d_remap} + {num_stats} "
                             f"attention features")
        count = 1 if self.shared else len(self.stages)
        self.predictors = nn.ModuleList(KeepPredictor(self.embed_dim, d_remap, num_stats, self.predictor_init_std)
                                        for _ in range(count))

    def settings(self) -> dict:
        return dict(d_remap=self.d_remap, statistics=list(self.statistics), dynamics=self.dynamics, heads=self.heads,
                    shared=self.shared, attention=self.attention)

    def observes(self, block):
        if not self.attention:
            return False
        return block <= self.stages[-1] if self.dynamics else block in self.stages

    def view(self, block):
        return "map" if self.attention else "none"

    def observe(self, block, state, probs, keys, x):
        if self.dynamics:
            RunningMoments.update(state, probs)

    def descriptors(self, state: TokenState, probs) -> torch.Tensor:
        """(B, n, features) attention descriptors of the present patch tokens (Eq. 10 without the tokens), scaled
        as :mod:`spot.core.pruning.statistics` says and compressed by log(1 + ·)."""
        keep = state.patch_policy
        maps = [(probs.detach().float(), 1)]
        if self.dynamics:
            mean, variance = RunningMoments.mean_and_variance(state)
            maps += [(mean, 1), (variance, 2)]
        d = torch.cat([attention_statistics(A, state.prefix, keep, self.features, order=order)
                       for A, order in maps], dim=-1)  # (B, n, H, F)
        d = d.mean(dim=2) if self.heads == "averaged" else d.flatten(2)
        # (ours) log(1 + ·): the scale-free statistics are ≥ 0 but heavy-tailed (attention sinks give running-variance
        # descriptors of 10³–10⁴ beside typical values of 1), which stalls the predictor's training
        return torch.log1p(d).to(probs.dtype)

    def scores(self, stage, state, x, probs):
        predictor = self.predictors[0 if self.shared else stage]
        stats = self.descriptors(state, probs) if self.attention else None
        return predictor(x[:, state.prefix:], state.patch_policy, stats)


@register
class DynamicViT(SpotAD):
    """DynamicViT (Rao et al. 2021) as its authors compute it (raoyongming/DynamicViT
    ``VisionTransformerDiffPruning``): the learned predictor on token embeddings only (no attention), reading the
    *input* of each stage block and pruning before it — the stage block already runs on the kept tokens — and
    keeping ``int(n0·ρ^k)`` tokens at stage k (at least 1: where the authors' rule would keep none on a tiny grid,
    one is kept)."""

    name = "dynamicvit"
    summary = "DynamicViT: learned predictor on token embeddings, before each stage block (Rao et al. 2021)"
    position = "input"
    predictor_init_std = 0.02  # the authors' _init_weights: trunc_normal(0.02) Linear weights, zero biases

    def __init__(self, *, d_remap: int | None = None, shared: bool = False, **common):
        super().__init__(d_remap=d_remap, shared=shared, attention=False, **common)

    def settings(self) -> dict:
        return dict(d_remap=self.d_remap, shared=self.shared)

    def keep_count(self, stage, present, state):
        return min(present, max(1, int(state.num_patches * self.keep_ratio ** (stage + 1))))


@register
class Heuristic(ScoredPruning):
    """The SPOT-AD paper Table 7's non-learned heuristic: the CLS→token attention averaged over heads and over every block
    so far (blocks 1 … stage, over the retained tokens), top tokens kept."""

    name = "heuristic"
    summary = "heuristic: CLS attention averaged over heads and blocks so far (the SPOT-AD paper, Table 7)"
    MEMORY = "cls_attention_sum"

    def observes(self, block):
        return block <= self.stages[-1]

    def view(self, block):
        return "cls"

    def observe(self, block, state, probs, keys, x):
        cls = probs[:, :, 0, :].detach().float().mean(dim=1)  # (B, N) over all tokens present
        held = state.recall(self.MEMORY)
        state.remember(self.MEMORY, cls if held is None else held + cls, axes=(1,))

    def scores(self, stage, state, x, probs):
        return state.recall(self.MEMORY)[:, state.prefix:]


@register
class EViT(ScoredPruning):
    """EViT (Liang et al. 2022): at each stage keep the top ⌈ρ·n⌉ of the n patch tokens present by the CLS row of
    the head-averaged attention (ratios compound); ``fuse`` (default on, as every fine-tuning and evaluation script
    the authors released runs, ``--fuse_token``): the dropped tokens are fused into one extra token, weighted by
    their CLS attention (appended last; it can be pruned at a later stage like any token)."""

    name = "evit"
    summary = "EViT: keep the top CLS-attention tokens (Liang et al. 2022)"

    def __init__(self, *, fuse: bool = True, **common):
        super().__init__(**common)
        self.fuse = bool(fuse)

    def keep_count(self, stage, present, state):
        return max(1, min(present, _ceil(self.keep_ratio * present)))

    def observes(self, block):
        return block in self.stages

    def view(self, block):
        return "cls"

    def scores(self, stage, state, x, probs):
        return probs[:, :, 0, state.prefix:].mean(dim=1)

    def reduce(self, block, state, x, probs, keys):
        if not self.fuse:
            return super().reduce(block, state, x, probs, keys)
        cls = self.scores(None, state, x, probs)
        n = cls.shape[1]
        k = self.keep_count(self.stage_of(block), n, state)
        if k == n:
            return x
        order = cls.argsort(dim=1, descending=True)
        keep, dropped = order[:, :k].sort(dim=1).values, order[:, k:]
        patches = x[:, state.prefix:]
        weights = torch.gather(cls, 1, dropped)[..., None]
        fused = (torch.gather(patches, 1, dropped[..., None].expand(-1, -1, x.shape[-1])) * weights).sum(1, True)
        x = state.keep(x, keep)
        state.index = torch.cat([state.index, state.index.new_full((x.shape[0], 1), -1)], dim=1)
        return torch.cat([x, fused], dim=1)


@register
class ToMe(PruningMethod):
    """ToMe (Bolya et al. 2023) as its authors compute it (facebookresearch/ToMe ``tome/merge.py``, ``tome/patch``):
    in every block, after attention and before the MLP, bipartite soft matching over *all* tokens — A = tokens 0, 2,
    4 …, B = 1, 3, 5 … (the class token is A's first and never a source: its scores are −∞; a protected token in B
    is never a destination), r = min(r, (t − prefix) // 2) — by the cosine similarity of the head-averaged keys,
    merging the r most similar A→B edges by size-weighted average; the unmerged A tokens keep their order, then B.
    ``prop_attn``: sizes enter attention as log(size) (proportional attention); :func:`spot.prune` defaults it to
    the authors' choice for the model's pooling — on for a CLS-token model (their timm patch), off for an
    average-pooled MAE model (their MAE patch, which pools by size: so does :class:`~spot.core.pruning.PrunedViT`
    whenever sizes exist). ``r=None``: the r
    whose token count over the blocks matches quarter-stage pruning at ``keep_ratio`` (:func:`matching_r`). With
    more than one prefix token (registers) the prefix is moved back to the front after each merge (the authors
    support one class and one distillation token, and leave the latter where the merge puts it)."""

    name = "tome"
    summary = "ToMe: training-free token merging (Bolya et al. 2023)"

    def __init__(self, *, r: int | None = None, prop_attn: bool = True, **common):
        if common.get("stages") is None:
            common["stages"] = tuple(range(common["depth"]))
        super().__init__(**common)
        if r is None:
            r = matching_r(self.num_patches, self.depth, self.keep_ratio)
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"r (tokens merged per block) must be an int ≥ 0, got {r!r}")
        limit = (self.num_patches - 1) // len(self.stages)
        if r > limit:
            raise ValueError(f"r = {r} merges {r * len(self.stages)} of {self.num_patches} patch tokens over "
                             f"{len(self.stages)} blocks, leaving none: r must be ≤ {limit}")
        if not isinstance(prop_attn, bool):
            raise ValueError(f"prop_attn must be true or false, got {prop_attn!r}")
        self.r, self.prop_attn = r, prop_attn

    def extra_repr(self):
        return f"r={self.r}, prop_attn={self.prop_attn}, blocks={list(self.stages)}"

    def begin(self, state, x):
        state.size = x.new_ones(x.shape[0], x.shape[1], 1)
        state.prop_attn = self.prop_attn

    def view(self, block):
        return "none"  # the merge reads the keys only

    def reduce(self, block, state, x, probs, keys):
        p, t = state.prefix, x.shape[1]
        r = min(self.r, (t - p) // 2)
        if r <= 0:
            return x
        src, dst, unmerged = _bipartite_matching(keys.mean(dim=1), r, p)
        order = torch.cat([2 * unmerged, 2 * torch.arange(t // 2, device=x.device).expand(x.shape[0], -1) + 1],
                          dim=1)  # the full index of each token after the merge: unmerged A, then B
        # one class token is already first (A's first, unmerged ones in index order); registers are moved up to it
        front = (order < p).to(torch.int8).argsort(dim=1, descending=True, stable=True) if p > 1 else None
        if front is not None:
            order = torch.gather(order, 1, front)

        def merged(values):
            va, vb = values[:, ::2], values[:, 1::2]
            width = values.shape[-1]
            vb = vb.scatter_reduce(1, dst[..., None].expand(-1, -1, width),
                                   torch.gather(va, 1, src[..., None].expand(-1, -1, width)), reduce="sum")
            out = torch.cat([torch.gather(va, 1, unmerged[..., None].expand(-1, -1, width)), vb], dim=1)
            return out if front is None else torch.gather(out, 1, front[..., None].expand(-1, -1, width))

        size = merged(state.size)
        new_x = (merged(x * state.size) / size).to(x.dtype)
        state.size = None  # merged above, not gathered
        state.keep(None, order[:, p:] - p)  # index, policy, memory follow the tokens
        state.size = size
        return new_x


def _bipartite_matching(metric: torch.Tensor, r: int, prefix: int):
    """ToMe's bipartite soft matching (``tome/merge.py``) of ``metric`` (B, t, d) over all tokens: (src (B, r): the
    merged A positions, dst (B, r): their B partners, unmerged (B, ⌈t/2⌉ − r): the other A positions — in index
    order when there is a prefix, as the authors sort them with a class token). Prefix tokens are protected: one in
    A is never a source, one in B never a destination."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2], metric[:, 1::2]
    scores = a @ b.transpose(-1, -2)
    protected = torch.arange(metric.shape[1], device=metric.device) < prefix
    scores[:, protected[::2], :] = -math.inf
    scores[:, :, protected[1::2]] = -math.inf
    best, partner = scores.max(dim=-1)
    edges = best.argsort(dim=-1, descending=True)
    src, unmerged = edges[:, :r], edges[:, r:]
    if prefix:
        unmerged = unmerged.sort(dim=-1).values
    return src, torch.gather(partner, 1, src), unmerged


def matching_r(num_patches: int, depth: int, keep_ratio: float, stages=None) -> int:
    """The ToMe r (merges per block, every block) whose patch tokens entering the blocks' MLPs, summed over blocks,
    are closest to quarter-stage pruning at ``keep_ratio`` (ρ_k = ρ^k after each stage block)."""
    stages = default_stages(depth) if stages is None else stages
    counts = keep_counts(num_patches, keep_ratio, len(stages))
    present, target = num_patches, 0
    for block in range(depth):
        if block in stages:
            present = counts[stages.index(block)]
        target += present

    def tome_total(r):
        n, total = num_patches, 0
        for _ in range(depth):
            n -= min(r, n // 2)
            total += n
        return total

    limit = max(0, (num_patches - 1) // depth)
    return min(range(limit + 1), key=lambda r: (abs(tome_total(r) - target), r))

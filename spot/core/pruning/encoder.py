"""The token set between blocks and one timm ``Block`` run on it, with the hooks token pruning needs.

A :class:`TokenState` is what travels through the encoder beside the tokens: which original patch each token is
(``index``), the soft keep ``policy`` of training (learned methods mask tokens through attention instead of removing
them, as DynamicViT does), ToMe's token ``size``, the stages' keep decisions (for the rate loss) and any per-token
memory a method keeps across blocks (running attention statistics). :meth:`TokenState.keep` gathers all of it.

:func:`run_block` computes a timm ``Block`` exactly as timm does — ``x + ls1(attn(norm1(x)))`` then
``x + ls2(mlp(norm2(x)))`` — and, between the two halves, lets the pruning method look at the block's post-softmax
attention map and reduce the tokens (after attention, before the MLP: where EViT, ToMe and SPOT-AD act). Blocks that
need neither the map nor a mask run as the timm module itself (fused SDPA); the others compute the map only as far as
the method reads it (``view``: the whole map, the CLS row, or none — then attention is fused SDPA too, with ToMe's
log-size bias as its additive mask). Training masks of learned methods (``policy``) take the explicit path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block

__all__ = ["TokenState", "attention", "softmax_with_policy", "run_block", "check_blocks", "VIEWS"]

VIEWS = ("map", "cls", "none")  # how much of a block's post-softmax attention map a pruning method reads


def check_blocks(blocks) -> None:
    """Pruning runs timm ``Block``s half by half: refuse any other block (a different forward order)."""
    for i, blk in enumerate(blocks):
        if not (isinstance(blk, Block) and type(blk).forward is Block.forward and isinstance(blk.attn, Attention)
                and type(blk.attn).forward is Attention.forward):
            attention_kind = type(getattr(blk, "attn", None)).__name__
            raise ValueError(f"block {i} is a {type(blk).__name__} (attention {attention_kind}): token pruning needs "
                             f"timm ViT blocks (timm.models.vision_transformer.Block with its Attention), as in "
                             f"VisionTransformer / DeiT and SPoT models built on them")


def softmax_with_policy(logits: torch.Tensor, policy: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Attention over the kept tokens only, differentiable in the policy (DynamicViT): ``exp(logits) · policy`` of
    the keys, renormalised; a token always attends to itself (so a dropped query still has a distribution)."""
    n = logits.shape[-1]
    keys = policy.reshape(policy.shape[0], 1, 1, n).to(logits.dtype)
    eye = torch.eye(n, dtype=logits.dtype, device=logits.device).view(1, 1, n, n)
    keys = keys + (1.0 - keys) * eye
    weights = (logits - logits.amax(dim=-1, keepdim=True)).exp() * keys
    return (weights + eps / n) / (weights.sum(dim=-1, keepdim=True) + eps)


def attention(attn: Attention, x: torch.Tensor, *, policy=None, size=None, view: str = "map"):
    """timm's ``Attention`` → (output, post-softmax map, keys (B, H, N, d)).

    ``view``: the map returned — ``"map"`` the whole (B, H, N, N) map (computed explicitly), ``"cls"`` its first row
    (B, H, 1, N), ``"none"`` None; the last two compute the output by fused SDPA. ``policy`` (B, N, 1): keep mask of
    training (:func:`softmax_with_policy`; always explicit); ``size`` (B, N, 1): ToMe's token sizes, added as
    ``log(size)`` to the logits (proportional attention). Neither: exactly timm's softmax."""
    if view not in VIEWS:
        raise ValueError(f"attention view must be one of {', '.join(VIEWS)}, got {view!r}")
    B, N, _ = x.shape
    gate = attn.gate(x).sigmoid() if getattr(attn, "gate", None) is not None else None
    q, k, v = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    bias = None if size is None else size.log().reshape(B, 1, 1, N).to(q.dtype)
    if policy is None and view != "map":
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=attn.attn_drop.p if attn.training else 0.0)
        probs = None
        if view == "cls":
            logits = (q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)
            probs = (logits if bias is None else logits + bias).softmax(dim=-1)
    else:
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        if bias is not None:
            logits = logits + bias
        probs = logits.softmax(dim=-1) if policy is None else softmax_with_policy(logits, policy)
        out = attn.attn_drop(probs) @ v
    out = out.transpose(1, 2).reshape(B, N, attn.attn_dim)
    out = attn.norm(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), probs, k


@dataclass
class TokenState:
    """The token set between blocks (see the module docs). ``prefix`` tokens (CLS, registers) are never pruned."""

    prefix: int
    index: torch.Tensor  # (B, n) the original patch index of each present patch token (−1: a fused token)
    num_patches: int  # n0, the patch tokens at the input
    policy: torch.Tensor | None = None  # (B, N, 1) training keep mask over all tokens (prefix 1), or None
    size: torch.Tensor | None = None  # (B, N, 1) tokens merged into each (ToMe), or None
    prop_attn: bool = True  # the sizes enter attention as log(size) (ToMe's proportional attention)
    decisions: list = field(default_factory=list)  # per stage: (B, n_stage) keep decision over present patches
    memory: dict = field(default_factory=dict)  # name → (tensor, token axes): a method's per-token memory

    @classmethod
    def start(cls, x: torch.Tensor, prefix: int) -> "TokenState":
        B, N, _ = x.shape
        index = torch.arange(N - prefix, device=x.device).expand(B, -1)
        return cls(prefix, index, N - prefix)

    @property
    def patch_policy(self) -> torch.Tensor | None:
        """(B, n) keep mask of the present patch tokens (training), or None."""
        return None if self.policy is None else self.policy[:, self.prefix:, 0]

    def remember(self, name: str, tensor: torch.Tensor, axes: tuple[int, ...]) -> None:
        """Keep ``tensor`` across blocks; ``axes``: its dimensions that run over all tokens (prefix first)."""
        self.memory[name] = (tensor, tuple(axes))

    def recall(self, name: str):
        return self.memory[name][0] if name in self.memory else None

    def keep(self, x: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
        """Gather the prefix and the present patch tokens ``keep`` (B, k) (positions among the present patches, in
        the order to keep) from ``x`` and from everything the state carries per token (``x`` None: the state only,
        for a method that computes the new tokens itself)."""
        B = keep.shape[0]
        rows = torch.cat([torch.arange(self.prefix, device=keep.device).expand(B, -1), keep + self.prefix], dim=1)
        self.index = torch.gather(self.index, 1, keep)
        if self.policy is not None:
            self.policy = _take(self.policy, rows, 1)
        if self.size is not None:
            self.size = _take(self.size, rows, 1)
        for name, (tensor, axes) in list(self.memory.items()):
            for axis in axes:
                tensor = _take(tensor, rows, axis)
            self.memory[name] = (tensor, axes)
        return None if x is None else _take(x, rows, 1)


def _take(t: torch.Tensor, rows: torch.Tensor, axis: int) -> torch.Tensor:
    """``t`` gathered along ``axis`` with per-sample indices ``rows`` (B, k); batch is axis 0."""
    axis = axis % t.dim()
    shape = [rows.shape[0]] + [1] * (t.dim() - 1)
    shape[axis] = rows.shape[1]
    index = rows.reshape(shape).expand(*[t.shape[d] if d != axis else rows.shape[1] for d in range(t.dim())])
    return torch.gather(t, axis, index)


def run_block(blk: Block, x: torch.Tensor, state: TokenState, *, observe=None, reduce=None,
              view: str = "map") -> torch.Tensor:
    """One timm ``Block`` on the state's tokens. ``observe(probs, keys, x)`` sees the post-softmax attention map
    (as much of it as ``view`` asks: :func:`attention`) and keys of this block; ``reduce(x, probs, keys) → x``
    prunes or merges tokens after attention, before the MLP."""
    if observe is None and reduce is None and state.policy is None and state.size is None:
        return blk(x)
    h, probs, keys = attention(blk.attn, blk.norm1(x), policy=state.policy,
                               size=state.size if state.prop_attn else None, view=view)
    x = x + blk.drop_path1(blk.ls1(h))
    if observe is not None:
        observe(probs, keys, x)
    if reduce is not None:
        x = reduce(x, probs, keys)
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

"""SPOT-AD's attention descriptors (the SPOT-AD paper, §3.2, Eqs. 5–10).

From a post-softmax attention map A (B, H, N, N) with the prefix tokens first, per head and per patch token t:
the CLS→t weight (``cls_out``), the t→CLS weight (``cls_in``), and the mean and variance of row t and of column t of
the patch–patch block — Eq. 9's ``D^A``. The running mean M and variance Σ of the maps over the current and earlier
blocks give ``D^M`` and ``D^Σ`` by the same function. Means and variances are over the *retained* patch tokens: in
training, where dropped tokens stay in the sequence, they are weighted by the keep mask, so train and inference see
the same statistics.

Scale (our choice; the paper is silent): attention weights are ≈ 1/N, so every weight-valued feature is multiplied
by the number of keys present N and every variance by N² (a uniform map gives 1 and 0 for any N); the running
variance map's entries are ≈ 1/N², so its scale is squared once more. This keeps the predictor's inputs O(1) at every
stage and sequence length.
"""
from __future__ import annotations

import torch

__all__ = ["FEATURES", "attention_statistics", "RunningMoments"]

# the 6 per-head descriptors of Eq. 9, in order; "mean"/"variance" ablations drop the row/column moments
FEATURES = ("cls_out", "cls_in", "row_mean", "col_mean", "row_var", "col_var")


def attention_statistics(A: torch.Tensor, prefix: int, keep: torch.Tensor | None = None,
                         features=FEATURES, order: int = 1) -> torch.Tensor:
    """Eq. 9's descriptors → (B, n, H, len(features)) for the n patch tokens of ``A`` (B, H, N, N).

    ``keep`` (B, n) weights the patch tokens (1 = retained; None = all); the CLS token is token 0. ``order``: the
    power of 1/N the map's entries scale with (1: attention weights and their running mean; 2: their running
    variance), for the scaling described in the module docs."""
    B, H, N, _ = A.shape
    n = N - prefix
    w = A.new_ones(B, n) if keep is None else keep.to(A.dtype)
    count = w.sum(dim=1).clamp_min(1.0)  # retained patch tokens per image
    scale = (count + prefix).reshape(B, 1, 1) ** order  # keys present
    block = A[:, :, prefix:, prefix:]  # (B, H, n, n): row t = what t attends to, column t = who attends to t
    wk = w.reshape(B, 1, 1, n)  # over the other index of a row (the keys j) …
    wq = w.reshape(B, 1, n, 1)  # … or of a column (the queries i)
    denom = count.reshape(B, 1, 1)
    row_mean = (block * wk).sum(-1) / denom
    col_mean = (block * wq).sum(-2) / denom
    out = {
        "cls_out": A[:, :, 0, prefix:] * scale,
        "cls_in": A[:, :, prefix:, 0] * scale,
        "row_mean": row_mean * scale,
        "col_mean": col_mean * scale,
        "row_var": ((block - row_mean[..., None]) ** 2 * wk).sum(-1) / denom * scale ** 2,
        "col_var": ((block - col_mean[..., None, :]) ** 2 * wq).sum(-2) / denom * scale ** 2,
    }
    return torch.stack([out[f] for f in features], dim=-1).transpose(1, 2)  # (B, n, H, F)


class RunningMoments:
    """Running mean and variance of the attention maps over blocks (M and Σ of Eq. 10), elementwise over the token
    pairs still present; kept in a :class:`~spot.core.pruning.encoder.TokenState`'s memory so that pruning gathers it."""

    SUM, SQUARES, COUNT = "attention_sum", "attention_squares", "attention_count"

    @classmethod
    def update(cls, state, A: torch.Tensor) -> None:
        A = A.detach().float()
        total, squares = state.recall(cls.SUM), state.recall(cls.SQUARES)
        state.remember(cls.SUM, A if total is None else total + A, axes=(-2, -1))
        state.remember(cls.SQUARES, A * A if squares is None else squares + A * A, axes=(-2, -1))
        state.remember(cls.COUNT, (state.recall(cls.COUNT) or 0) + 1, axes=())

    @classmethod
    def mean_and_variance(cls, state) -> tuple[torch.Tensor, torch.Tensor]:
        count = state.recall(cls.COUNT)
        mean = state.recall(cls.SUM) / count
        return mean, (state.recall(cls.SQUARES) / count - mean * mean).clamp_min(0.0)

"""The SPOT-AD paper's fine-tuning objective (Eq. 15): L = CE + λ1·L_rate + λ2·KL(teacher ‖ student) + λ3·L_token.

* L_rate (Eq. 12): mean over images and stages of (ρ_k − ρ̂_k)², ρ̂_k the share of the n0 patch tokens the stage-k
  training mask keeps (learned methods; 0 for the others, which prune to the exact count).
* L_pred (Eq. 13): KL divergence of the student's class distribution from the unpruned teacher's.
* L_token (Eq. 14): 1 − cosine similarity of the last-layer tokens to the teacher's, over the retained tokens
  (averaged per image); or DynamicViT's squared error (``prune.token_loss: mse``).
The teacher is the model before pruning (frozen). λ1 = 2, λ2 = 0.5, λ3 = 0 (DeiT) in the seed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["rate_loss", "distillation_loss", "token_loss"]


def rate_loss(decisions, keep_ratio: float, num_patches: int) -> torch.Tensor | None:
    """Eq. 12 from the stages' (B, n0) training keep masks; None without masks."""
    if not decisions:
        return None
    terms = [((d.sum(dim=1) / num_patches - keep_ratio ** (k + 1)) ** 2).mean() for k, d in enumerate(decisions)]
    return torch.stack(terms).mean()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 13: KL(teacher ‖ student), averaged over the batch."""
    return F.kl_div(F.log_softmax(student_logits.float(), dim=-1), F.log_softmax(teacher_logits.float(), dim=-1),
                    reduction="batchmean", log_target=True)


def token_loss(student_tokens: torch.Tensor, teacher_tokens: torch.Tensor, state,
               kind: str = "cosine") -> torch.Tensor:
    """The distance of the retained last-layer patch tokens to the teacher's: the student's (B, prefix + n, C) — all
    still in the sequence under a training mask (weighted by it), or the ones kept (matched to the teacher's by their
    original index; a fused or merged token has none of its own and is left out).

    ``cosine``: Eq. 14, 1 − cosine similarity averaged per image, then over images. ``mse``: DynamicViT's token
    distillation (``DistillDiffPruningLoss_dynamic`` with ``mse_token``): the squared error averaged over every
    channel of every retained token of the batch, pooled (an image keeping more tokens weighs more)."""
    prefix, index = state.prefix, state.index
    student = student_tokens[:, prefix:].float()
    teacher = teacher_tokens[:, prefix:].float()
    w = torch.ones(student.shape[:2], device=student.device)
    if student.shape[1] != teacher.shape[1] or state.size is not None:
        w = (index >= 0).float()
        teacher = torch.gather(teacher, 1, index.clamp_min(0)[..., None].expand(-1, -1, teacher.shape[-1]))
    elif state.patch_policy is not None:
        w = state.patch_policy.float()
    if kind == "mse":
        squared = (student - teacher).pow(2).mean(dim=-1)
        return (squared * w).sum() / w.sum().clamp_min(1e-6)
    if kind != "cosine":
        raise ValueError(f"token loss {kind!r}: accepted cosine, mse")
    cos = F.cosine_similarity(student, teacher, dim=-1)
    return ((1 - cos) * w).sum(dim=1).div(w.sum(dim=1).clamp_min(1e-6)).mean()

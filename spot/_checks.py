"""Argument validation shared by the public API.

Every check raises ``ValueError`` naming the argument, what it got and what it accepts, so that a
user sees the fix in the message rather than a shape error deep inside ``grid_sample``.
"""
from __future__ import annotations

from typing import Sequence

from ._lazy import lazy

torch = lazy("torch")


def pair(value, name: str) -> tuple[int, int]:
    """``int`` or a length-2 sequence of ``int`` → ``(a, b)``, both ≥ 1."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        out = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        out = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} must be an int or a pair of ints (height, width), got {value!r}")
    if min(out) < 1:
        raise ValueError(f"{name} must be ≥ 1 in both dimensions, got {out}")
    return out


def image_size_of(value, name: str = "image_size") -> tuple[int, int]:
    return pair(value, name)


def images_tensor(images: torch.Tensor, in_chans: int | None = None) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor, got dtype {images.dtype}")
    if in_chans is not None and images.shape[1] != in_chans:
        raise ValueError(
            f"images have {images.shape[1]} channels but the model expects in_chans={in_chans}; "
            f"convert the images (e.g. repeat a grey channel) or build the model with in_chans={images.shape[1]}"
        )
    return images


def positions_tensor(positions: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Validate positions of shape (B, m, 2) or (m, 2); return them as (B', m, 2)."""
    if not isinstance(positions, torch.Tensor):
        raise ValueError(
            f"positions must be a torch.Tensor of shape (B, m, 2) or (m, 2) holding (y, x) in [0, 1], "
            f"got {type(positions).__name__}"
        )
    if positions.dim() == 2:
        positions = positions.unsqueeze(0)
    if positions.dim() != 3 or positions.shape[-1] != 2:
        raise ValueError(
            f"positions must have shape (B, m, 2) or (m, 2) holding (y, x), got shape {tuple(positions.shape)}"
        )
    if positions.shape[1] < 1:
        raise ValueError("positions must hold at least one token (m ≥ 1), got m = 0")
    if not positions.is_floating_point():
        raise ValueError(f"positions must be a floating-point tensor, got dtype {positions.dtype}")
    if not torch.isfinite(positions).all():
        raise ValueError("positions must be finite; got NaN or inf (check the optimiser or prior that made them)")
    if batch_size is not None and positions.shape[0] not in (1, batch_size):
        raise ValueError(
            f"positions have batch size {positions.shape[0]} but images have {batch_size}; "
            f"give one set of positions per image, or a single (m, 2) set shared by the batch"
        )
    return positions


def num_tokens_value(num_tokens, maximum: int | None = None, what: str = "") -> int:
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int):
        raise ValueError(f"num_tokens must be an int ≥ 1, got {num_tokens!r}")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be ≥ 1, got {num_tokens}")
    if maximum is not None and num_tokens > maximum:
        raise ValueError(f"num_tokens must be ≤ {maximum}{what}, got {num_tokens}")
    return num_tokens


def integer(value, name: str, minimum: int = 1, meaning: str = "") -> int:
    """``value`` an ``int`` (not a bool) ≥ ``minimum``; ``meaning`` is appended to the message, e.g. " (pixels)"."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}{meaning}, got {value!r}")
    return value


def number(value, name: str, *, above=None, at_least=None, below=None, meaning: str = "") -> float:
    """``value`` a real number (not a bool) with ``value > above``, ``value ≥ at_least`` and ``value < below`` (each
    bound optional); the message states the accepted range, e.g. "floor must be a number in [0, 1)"."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    ok = ok and (above is None or value > above) and (at_least is None or value >= at_least) \
        and (below is None or value < below)
    if not ok:
        if at_least is not None and below is not None:
            bounds = f"in [{at_least}, {below})"
        elif above is not None and below is not None:
            bounds = f"in ({above}, {below})"
        else:
            bounds = " and ".join(b for b in (above is not None and f"> {above}", at_least is not None and
                                              f"≥ {at_least}", below is not None and f"< {below}") if b)
        raise ValueError(f"{name} must be a number {bounds}{meaning}, got {value!r}")
    return float(value)

"""Measurement primitives below every experiment: FLOPs of a forward pass (torch's ``FlopCounterMode``) and timing
in interleaved rounds (each round times one call of every measurement, in a rotated order, between device
synchronisations). :mod:`spot.experiments.throughput` (Figure 5) and the pruning experiment measure with these; so do the
scripts in ``benchmarks/``."""
from __future__ import annotations

import contextlib
import time

import torch

from .settings.throughput import DTYPE_NAMES
from torch.utils.flop_counter import sdpa_flop_count
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["DTYPES", "count_gflops", "interleaved_rounds", "interleaved_times"]

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}  # float32, bfloat16, float16


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: str):
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype == "float16" and device.type != "cuda":
        raise ValueError("dtype float16 needs a CUDA device (CPU autocast supports bfloat16); use float32 or bfloat16")
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_gflops(fn, images: torch.Tensor) -> float:
    """GFLOPs of ``fn(images)`` per image, counted by ``FlopCounterMode`` (one forward pass).

    FLOPs count 2 per multiply–add (ViT-B/16 at 224²: ≈ 35 GFLOPs, the "17.6 GFLOPs" of papers that count MACs).
    torch's counter knows the CUDA attention kernels; the CPU one (``_scaled_dot_product_flash_attention_for_cpu``)
    is added here with the same formula, so the count does not depend on the device.
    """

    custom = {}
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is not None:
        custom[cpu_attention] = _cpu_attention_flops
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with torch.inference_mode(), counter:
        fn(images)
    return counter.get_total_flops() / 1e9 / images.shape[0]


def interleaved_rounds(calls: list, warmup: int, repeats: int, sync=lambda: None) -> list[list[float]]:
    """Seconds per call of each of ``calls`` (zero-argument callables): ``warmup`` untimed calls of each, then
    ``repeats`` rounds that time one call of each, the order rotated by one every round (round r starts with call
    r mod n), each timed call between two ``sync()`` (device synchronisation). Shared with benchmarks/."""
    n = len(calls)
    times = [[] for _ in calls]
    for fn in calls:
        for _ in range(warmup):
            fn()
    sync()
    for r in range(repeats):
        for i in [(r + j) % n for j in range(n)]:
            sync()
            start = time.perf_counter()
            calls[i]()
            sync()
            times[i].append(time.perf_counter() - start)
    return times


def interleaved_times(forwards: list, images: torch.Tensor, device: torch.device, dtype: str, warmup: int,
                      repeats: int) -> list[list[float]]:
    """:func:`interleaved_rounds` of ``forward(images)`` for each of ``forwards``, under ``torch.inference_mode``
    and the ``dtype``'s autocast."""
    with torch.inference_mode(), _autocast(device, dtype):
        return interleaved_rounds([lambda f=f: f(images) for f in forwards], warmup, repeats, lambda: _sync(device))

"""Does torch.compile or bf16 pay for training the embedded ViTs on the CPU? Side by side in one process (issue 16).

    python benchmarks/train_step.py [--threads 1] [--batch 64] [--repeats 15] [--variants eager,compile,bf16]

One optimiser step (forward, cross-entropy, backward, AdamW) of the embedded backbone architecture (``overhead.SCALES
["embedded"]``: the timm ViT of the default preset, 36 tokens of 8×8 on 48×48 canvases) and of the SPoT model on it
(36 Isotropic tokens), timed in interleaved rounds (``overhead.rounds``), each variant on its own copy of the same
initial weights:

* ``eager`` — what ``spot train`` runs;
* ``compile`` — the model under ``torch.compile`` (inductor; compilation happens in the warm-up rounds, not timed);
* ``bf16`` — eager under ``torch.autocast("cpu", torch.bfloat16)``.

Prints each variant's median step time and its ratio to eager (median [IQR] of the per-round ratios), the compile
time, and how close each step comes to the machine: the step's FLOPs (3 × the forward's, ``FlopCounterMode``; the
backward counted as twice the forward) per second, as a share of the fp32 matmul peak measured in the same process
(``gpu_check.matmul_peak_tflops``: a 1024² product on these threads) — the physical limit of a faster training step.
Random images and labels. Nothing here is a test; benchmarks/RESULTS.md records a run.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import matmul_peak_tflops  # noqa: E402
from overhead import SCALES, ratio, rounds  # noqa: E402


def step_fn(model, images, labels, positions=None, autocast: bool = False):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        ctx = torch.autocast("cpu", torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
        with ctx:
            logits = model(images) if positions is None else model(images, positions)
        loss = F.cross_entropy(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--variants", default="eager,compile,bf16")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import timm

    from spot import SPoTViT, isotropic_layout
    from spot.provenance import device_description
    from spot.measure import count_gflops

    name, kwargs, budgets = SCALES["embedded"]
    torch.manual_seed(0)
    vit = timm.create_model(name, pretrained=False, **kwargs).train()
    C, H = vit.patch_embed.proj.in_channels, vit.patch_embed.img_size[0]
    images, labels = torch.randn(args.batch, C, H, H), torch.randint(0, vit.num_classes, (args.batch,))
    positions = isotropic_layout(max(budgets), (H, H))[None].expand(args.batch, -1, -1)
    variants = args.variants.split(",")
    peak = 1e3 * matmul_peak_tflops("cpu", "float32")
    print(f"device: {device_description(torch.device('cpu'))}; batch {args.batch}; {args.repeats} rounds; "
          f"fp32 matmul peak {peak:.1f} GFLOP/s")
    print("| model | variant | ms per step (median) | ÷ eager (median [IQR]) | GFLOP/s (% of the matmul peak) |\n"
          "|---|---|---|---|---|")
    for label, base, pos in (("timm ViT (backbone)", vit, None), ("SPoT, 36 tokens (retrofit)",
                                                                   SPoTViT.from_timm(vit).train(), positions)):
        fns, compile_s = {}, None
        for v in variants:
            model = copy.deepcopy(base)
            if v == "compile":
                model = torch.compile(model)
                start = time.perf_counter()
                step_fn(model, images, labels, pos)()  # compiles forward and backward
                compile_s = time.perf_counter() - start
            fns[v] = step_fn(model, images, labels, pos, autocast=(v == "bf16"))
        t = rounds(fns, args.repeats)
        forward = base.eval() if pos is None else (lambda x, m=base.eval(): m(x, pos))
        step_gflops = 3 * count_gflops(forward, images) * args.batch
        base.train()
        for v in variants:
            r = ratio(t, v, "eager") if v != "eager" else "1"
            achieved = step_gflops / statistics.median(t[v])
            print(f"| {label} | {v} | {1e3 * statistics.median(t[v]):.1f} | {r} | {achieved:.1f} "
                  f"({100 * achieved / peak:.0f} %) |", flush=True)
        if compile_s is not None:
            print(f"| {label} | compile time | {compile_s:.1f} s (first step) | | |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does token pruning's FLOP saving reach the clock? Measured side by side in one process (issue 16, benchmark 5).

    python benchmarks/pruning.py [--scale embedded|vitb|both] [--threads 1] [--keep 0.5,0.7] [--repeats 15]

For every scale, batch size (batch 1 — one image at a time, as in a latency-bound service — and a large batch) and
keep ratio ρ, each pruning method (SPOT-AD, DynamicViT, the heuristic, EViT, ToMe; ``spot.prune`` with its
defaults: stages after each quarter of the depth, ToMe's r matched to ρ) runs against the unpruned timm ViT forward in
interleaved rounds (``overhead.rounds``: every round runs every model once, in a rotating order), inference under
``torch.inference_mode``. Columns:

* **tokens** — the mean number of tokens entering a block (``model.token_counts`` of the last forward) ÷ the
  unpruned count: the share of the token work left;
* **FLOPs ratio** — GFLOPs per image of the pruned forward (``spot.measure.count_gflops``: matrix products and
  attention, including the predictors' MLPs) ÷ the unpruned ViT's;
* **time ratio** — median over rounds of the per-round time ratio pruned ÷ unpruned, with its interquartile range;
* **clock ÷ FLOPs** — time ratio ÷ FLOPs ratio: 1 when the FLOP saving reaches the clock entirely, above 1 when the
  method's own work (explicit attention maps at its stage blocks, gathers, running statistics, matching) eats into it.

Rows "…, explicit map": the heuristic, EViT and ToMe with the whole attention map computed explicitly in every block
they hook (the path before their blocks ran on fused SDPA; ``PruningMethod.view``) — what fused attention buys them.

Random weights and images (the learned predictors untrained): the cost does not depend on either, only the kept-token
counts do, and those are fixed by ρ. Nothing here is a test; benchmarks/RESULTS.md records a run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import SCALES, ratio, rounds  # noqa: E402

METHODS = ("spot_ad", "dynamicvit", "heuristic", "evit", "tome")
FUSED = ("heuristic", "evit", "tome")  # read the CLS row or no map: fused SDPA; also run with the explicit map
BATCHES = {"embedded": (1, 256), "vitb": (1, 16)}  # 1 and a large batch that a 1-thread CPU round still affords


def bench(scale: str, batches, keep_ratios, repeats: int) -> list[str]:
    import timm

    from spot import prune
    from spot.measure import count_gflops

    name, kwargs, _ = SCALES[scale]
    kwargs = {**kwargs, "global_pool": "token", "fc_norm": False}  # SPOT-AD and EViT rank tokens by the CLS token
    torch.manual_seed(0)
    vit = timm.create_model(name, pretrained=False, **kwargs).eval()
    C, H = vit.patch_embed.proj.in_channels, vit.patch_embed.img_size[0]
    lines = []
    for rho in keep_ratios:
        pruned = {m: prune(vit, m, keep_ratio=rho).eval() for m in METHODS}
        for m in FUSED:  # the same method with the whole attention map computed explicitly in its blocks
            net = prune(vit, m, keep_ratio=rho).eval()
            net.method.view = lambda block: "map"
            pruned[f"{m}, explicit map"] = net
        one = torch.randn(1, C, H, H)
        base_flops = count_gflops(vit, one)
        flops, tokens = {}, {}
        for m, net in pruned.items():
            flops[m] = count_gflops(net, one) / base_flops
            tokens[m] = statistics.mean(net.token_counts) / (vit.patch_embed.num_patches + vit.num_prefix_tokens)
        for batch in batches:
            images = torch.randn(batch, C, H, H)
            fns = {"vit": lambda: vit(images), **{m: (lambda net=net: net(images)) for m, net in pruned.items()}}
            with torch.inference_mode():
                t = rounds(fns, repeats)
            for m in pruned:
                r = statistics.median(a / b for a, b in zip(t[m], t["vit"]))
                lines.append(f"| {scale} | {batch} | {rho} | {m} | {tokens[m]:.2f} | {flops[m]:.2f} | "
                             f"{ratio(t, m, 'vit')} | {r / flops[m]:.2f} |")
            lines.append(f"| {scale} | {batch} | {rho} | *unpruned ViT* | 1.00 | 1.00 | "
                         f"{1e3 * statistics.median(t['vit']):.1f} ms/batch | – |")
            print("\n".join(lines[-len(pruned) - 1:]), flush=True)
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=[*SCALES, "both"], default="both")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the quietest comparison)")
    p.add_argument("--keep", default="0.5,0.7", help="keep ratios ρ, comma-separated")
    p.add_argument("--batches", default=None, help="batch sizes, comma-separated (default: 1 and a large one per "
                                                    "scale: embedded 1,256; vitb 1,16)")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from spot.provenance import device_description

    keep = [float(x) for x in args.keep.split(",")]
    print(f"device: {device_description(torch.device('cpu'))}; {args.threads} thread(s); {args.repeats} "
          f"interleaved rounds")
    print("| scale | batch | ρ | method | tokens (mean per block, ÷ unpruned) | FLOPs ratio | time ratio "
          "(median [IQR]) | clock ÷ FLOPs |\n|---|---|---|---|---|---|---|---|", flush=True)
    for scale in (SCALES if args.scale == "both" else [args.scale]):
        batches = [int(b) for b in args.batches.split(",")] if args.batches else BATCHES[scale]
        bench(scale, batches, keep, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""SPoT's cost against timm's own ViT, measured side by side in one process (issue 16, benchmarks 1–3).

    python benchmarks/overhead.py [--scale embedded|vitb|both] [--threads 1] [--batch 64] [--repeats 15]

For every budget m, the forwards are timed in interleaved rounds (each round runs every method once, in a rotating
order, so drifting machine load hits them alike), and each ratio is the median over rounds of the per-round ratio,
with its interquartile range:

1. **overhead** — SPoT (the Isotropic layout for m, cached on the device) ÷ PatchDropout on the same ViT keeping m
   random grid patches (timm's patch embedding of every patch, then a gather), and at the full grid SPoT ÷ the plain
   timm ViT forward. Targets: ≤ 1.03 at the full grid, < 1 at sparse budgets.
2. **tokenizer share** — the time a SPoT forward spends before its blocks (the input checks, the windows and the
   kernelized positional embedding: ``SPoTViT.embed_tokens``) ÷ that whole forward, both clocked inside the same
   call (a pre-hook on ``norm_pre`` stamps the moment the tokens are ready), so the tokenizer runs where it runs in
   use: after the previous batch's blocks. For the layout the forward reuses (its window plan and embedding kept,
   ``spot.core.tokenizer.LayoutMemo``), and for a new layout tensor every call (a fresh copy: everything rebuilt).
   Targets: ≤ 3 % at ViT-B/16, ≤ 5 % at the embedded scale. (Until 2026-12-03 this timed ``embed_tokens`` as a
   call of its own in the rounds; both ways read the same within noise: 6.6 % apart, 7.0 % inside the forward at 4
   embedded tokens, batch 64 — the cost is the tokenizer's small operations running cold after the blocks.)
3. **SPoT-ON cost** — a 5-step search (``oracle_search``, lr 1e-2) on the batch ÷ one plain SPoT evaluation of it.
   Target: ≤ 7×.

Random weights and random images: the cost does not depend on either. Inference under ``torch.inference_mode``
(the search needs gradients and runs outside it). Nothing here is a test: it prints a table to read beside its
targets (benchmarks/RESULTS.md records a run).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

SCALES = {  # name → (timm model, its kwargs, budgets)
    "embedded": ("vit_tiny_patch16_224", dict(img_size=48, patch_size=8, in_chans=1, num_classes=10, embed_dim=96,
                                              depth=4, num_heads=3, global_pool="avg", fc_norm=True), [4, 9, 18, 36]),
    "vitb": ("vit_base_patch16_224", dict(), [25, 49, 100, 196]),
}


def rounds(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Seconds of each of ``fns`` (name → zero-argument callable) per round, ``repeats`` interleaved rounds in a
    rotating order (``spot.measure.interleaved_rounds``, what the workflow's throughput job times with)."""
    from spot.measure import interleaved_rounds

    return dict(zip(fns, interleaved_rounds(list(fns.values()), warmup, repeats)))


def ratio(times: dict, a: str, b: str) -> str:
    """Median and interquartile range of the per-round ratio a ÷ b."""
    r = sorted(x / y for x, y in zip(times[a], times[b]))
    q = statistics.quantiles(r, n=4)
    return f"{statistics.median(r):.3f} [{q[0]:.3f}, {q[2]:.3f}]"


class TokenizerClock:
    """Calls a SPoT forward and splits its time at the moment its tokens are ready (a pre-hook on ``norm_pre``, the
    first module after ``embed_tokens``): ``shares[name]`` collects tokenizer time ÷ forward time per call."""

    def __init__(self, spot):
        self.spot, self.shares, self._ready = spot, {}, None
        spot.norm_pre.register_forward_pre_hook(self._stamp)

    def _stamp(self, module, args):
        self._ready = time.perf_counter()

    def __call__(self, name: str, images: torch.Tensor, positions: torch.Tensor):
        start = time.perf_counter()
        out = self.spot(images, positions)
        self.shares.setdefault(name, []).append((self._ready - start) / (time.perf_counter() - start))
        return out


def share(shares: list) -> str:
    """Median of the per-call tokenizer shares, in %."""
    return f"{100 * statistics.median(shares):.1f} %"


def bench(scale: str, batch: int, repeats: int) -> list[str]:
    import timm

    from spot import PatchDropoutViT, SPoTViT, isotropic_layout, oracle_search

    name, kwargs, budgets = SCALES[scale]
    torch.manual_seed(0)
    vit = timm.create_model(name, pretrained=False, **kwargs).eval()
    spot, pd = SPoTViT.from_timm(vit).eval(), PatchDropoutViT(vit).eval()
    C, H = vit.patch_embed.proj.in_channels, vit.patch_embed.img_size[0]
    images = torch.randn(batch, C, H, H)
    labels = torch.randint(0, vit.num_classes, (batch,))
    grid = vit.patch_embed.num_patches
    lines, clock = [], TokenizerClock(spot)
    for m in budgets:
        clock.shares = {}
        positions = isotropic_layout(m, (H, H))[None]  # cached once, as the workflow's deterministic layouts
        keep = torch.stack([torch.randperm(grid)[:m].sort().values for _ in range(batch)])
        fns = {"spot": lambda: clock("kept", images, positions), "patchdropout": lambda: pd(images, keep=keep),
               "spot_new_layout": lambda: clock("new", images, positions.clone())}
        if m == grid:
            fns["vit"] = lambda: vit(images)
        with torch.inference_mode():
            t = rounds(fns, repeats)
        search = rounds({"search": lambda: oracle_search(spot, images, labels, positions, 1e-2, 5),
                         "eval": lambda: spot(images, positions)}, max(3, repeats // 3), warmup=1)
        vs_vit = ratio(t, "spot", "vit") if "vit" in t else "–"
        lines.append(f"| {scale} | {m} | {ratio(t, 'spot', 'patchdropout')} | {vs_vit} | "
                     f"{share(clock.shares['kept'][-repeats:])} | {share(clock.shares['new'][-repeats:])} | "
                     f"{ratio(search, 'search', 'eval')} | {1e3 * statistics.median(t['spot']):.1f} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", choices=[*SCALES, "both"], default="both")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the quietest comparison)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from spot.provenance import device_description

    print(f"device: {device_description(torch.device('cpu'))}; batch {args.batch}; {args.repeats} interleaved rounds")
    print("| scale | tokens | SPoT ÷ PatchDropout | SPoT ÷ ViT (full grid) | tokenizer share | tokenizer share, new "
          "layout | 5-step SPoT-ON ÷ evaluation | SPoT ms/batch |\n|---|---|---|---|---|---|---|---|")
    for scale in (SCALES if args.scale == "both" else [args.scale]):
        print("\n".join(bench(scale, args.batch, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""kNN over a whole training split: time and peak memory, the bank in blocks or whole (issue 16, benchmark 4).

    python benchmarks/knn.py [--bank 60000,500000,1281167] [--dim 192] [--queries 1024] [--threads 1]

``spot.experiments.evaluate.knn_classify`` holds one (``chunk_size`` queries × ``bank_chunk_size`` training features) block of
similarities at a time and merges each block's top k into the running top k. For each bank size N (Fashion-MNIST's
60 000, ImageNet's 1 281 167) this times one chunk of ``--queries`` queries with the default ``bank_chunk_size``
(65 536) and with the whole bank as one block (``bank_chunk_size = N``: what the code did before), each in a fresh
subprocess, and reports the peak resident memory above what the bank and the queries themselves take (``ru_maxrss``
after the call minus before it) and the seconds of the call; the predictions of the two must be equal. Random unit
features (the cost does not depend on them). Nothing here is a test; benchmarks/RESULTS.md records a run.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(n: int, dim: int, queries: int, block: int, threads: int) -> dict:
    """In this process: the bank, the queries, one kNN call; peak memory above the inputs (MiB) and seconds."""
    import torch

    from spot.experiments.evaluate import knn_classify

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(n, dim, generator=g), torch.randint(0, 1000, (n,), generator=g)
    query = torch.randn(queries, dim, generator=g)
    knn_classify(bank[:1000], labels[:1000], query[:8], k=20, num_classes=1000)  # warm the kernels, small
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    preds = knn_classify(bank, labels, query, k=20, num_classes=1000, chunk_size=queries, bank_chunk_size=block)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"extra_mib": (peak - before) / 1024, "seconds": seconds, "preds": preds.tolist()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bank", default="60000,500000,1281167", help="training-split sizes, comma-separated")
    p.add_argument("--dim", type=int, default=192, help="feature width (ViT-Ti 192, ViT-B 768)")
    p.add_argument("--queries", type=int, default=1024, help="queries in the chunk (the default chunk_size)")
    p.add_argument("--block", type=int, default=65536, help="bank_chunk_size (the default)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--one", nargs=2, type=int, metavar=("N", "BLOCK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], args.dim, args.queries, args.one[1], args.threads)))
        return 0
    print(f"{args.queries} queries × width {args.dim}, k 20, {args.threads} thread(s)")
    print("| bank N | similarities held, whole bank (MiB) | peak extra, whole bank (MiB) | peak extra, blocks of "
          f"{args.block} (MiB) | seconds whole | seconds blocks | same predictions |\n|---|---|---|---|---|---|---|")
    for n in (int(x) for x in args.bank.split(",")):
        runs = {}
        for name, block in (("whole", n), ("blocks", args.block)):
            out = subprocess.run([sys.executable, __file__, "--dim", str(args.dim), "--queries", str(args.queries),
                                  "--threads", str(args.threads), "--one", str(n), str(block)],
                                 check=True, capture_output=True, text=True).stdout
            runs[name] = json.loads(out.strip().splitlines()[-1])
        w, b = runs["whole"], runs["blocks"]
        print(f"| {n} | {args.queries * n * 4 / 2**20:.0f} | {w['extra_mib']:.0f} | {b['extra_mib']:.0f} | "
              f"{w['seconds']:.2f} | {b['seconds']:.2f} | {w['preds'] == b['preds']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

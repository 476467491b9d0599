"""What importing spot costs a process: the workflow's DAG build and every table/figure notebook import spot's
torch-free layers only; a model loads torch and timm on first use.

    python benchmarks/import_cost.py [--repeats 5]

Each import runs in a fresh interpreter (``python -c``), the three kinds interleaved in rotating rounds (as
``spot.measure.interleaved_rounds``), and the medians are printed with their ratio to the full model stack.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spot.measure import interleaved_rounds  # noqa: E402

IMPORTS = {
    "workflow (DAG build)": "import spot.config, spot.train.recipes, spot.core.placement, spot.paper, "
                            "spot.experiments.protocol",
    "table/figure notebook": "import spot, spot.paper.tables, spot.paper.figures, spot.findings",
    "a model (spot.SPoTViT)": "import spot; spot.SPoTViT",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    calls = [lambda code=code: subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
             for code in IMPORTS.values()]
    times = interleaved_rounds(calls, warmup=1, repeats=args.repeats)
    medians = [statistics.median(t) for t in times]
    full = medians[-1]
    for name, median, t in zip(IMPORTS, medians, times):
        print(f"{name:24s} median {median:6.2f} s  (min {min(t):.2f}, max {max(t):.2f})  {median / full:5.2f} × the model stack")
    return 0


if __name__ == "__main__":
    sys.exit(main())

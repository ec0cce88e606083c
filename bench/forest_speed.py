"""Forest advisor speed: what choosing a TU's lists with the forest costs a compile.

    .venv/bin/python bench/forest_speed.py [--forest FILE] [--tus 200] [--k 3]

The forest advisor runs in the compiling process (no server: it needs neither llama.cpp nor
numpy), so a compile pays for reading the forest file and for the choice itself. For labelled
TUs of the committed dataset (their stored summaries), one at a time: the time from summary to
pass lists (the walk of every tree and the greedy choice over the neighbours it finds), and,
in fresh processes as compiles are, importing the advisor and loading the file. Computing the
summary from the TU's IR is not included (the model advisor pays it too). Milliseconds,
medians and 95th percentiles.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time

from llmcc.advisor.forest import FOREST_FILE, Forest
from llmcc.train import labelled

LOAD = ("import sys, time; start = time.perf_counter(); "
        "from llmcc.advisor.forest import Forest; Forest.load(sys.argv[1]); "
        "print((time.perf_counter() - start) * 1000)")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--forest", default=FOREST_FILE)
    parser.add_argument("--tus", type=int, default=200)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--loads", type=int, default=20, help="fresh processes timed")
    args = parser.parse_args()
    rows = [r for r in labelled.read_all() if "summary" in r]
    random.Random(0).shuffle(rows)
    forest = Forest.load(args.forest)
    times, tried = [], []
    for row in rows[:args.tus]:
        start = time.perf_counter()
        tried.append(len(forest.choose(row["summary"], args.k)))
        times.append((time.perf_counter() - start) * 1000)
    loads = [float(subprocess.run([sys.executable, "-c", LOAD, args.forest], check=True,
                                  capture_output=True, text=True).stdout)
             for _ in range(args.loads)]
    print(f"{len(times)} TUs of the committed dataset, k = {args.k}, {os.cpu_count()} cores, "
          f"forest file {os.path.getsize(args.forest) / 1e6:.1f} MB, "
          f"{forest.header['trees']} trees, {forest.header['nodes']} nodes:")
    print("| | value |\n|---|---:|")
    print(f"| choice per TU (summary to lists), median | {statistics.median(times):.1f} ms |")
    print(f"| ... p95 | {percentile(times, 0.95):.1f} ms |")
    print(f"| import and load in a fresh process, median | {statistics.median(loads):.1f} ms |")
    print(f"| ... p95 | {percentile(loads, 0.95):.1f} ms |")
    print(f"| lists tried per TU (a list that adds nothing is not tried) | "
          f"{sum(tried) / len(tried):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

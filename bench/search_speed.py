"""Autotuner throughput: candidate evaluations per second on recorded TUs of median size.

    .venv/bin/python bench/search_speed.py --work ~/.cache/llmcc-corpus [--tus 8] [--budget 60]

Takes the TUs recorded by `python -m llmcc.train.corpus` whose bitcode size is closest to the
median, runs `llmcc.search.tune` on each with the given budget and worker threads, and prints
evaluations per second (and how many of them found IR already measured, which skips codegen).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import statistics
import tempfile
import time

from llmcc.search import tune
from llmcc.train.popular import recorded_evaluator


def median_tus(records: str, count: int) -> list[str]:
    paths = sorted(glob.glob(os.path.join(records, "*", "*.bc")))
    if not paths:
        raise SystemExit(f"no recorded TUs under {records}: run python -m llmcc.train.corpus")
    middle = statistics.median(os.path.getsize(p) for p in paths)
    return sorted(paths, key=lambda p: abs(os.path.getsize(p) - middle))[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("--tus", type=int, default=8)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print("| TU | bitcode KB | evaluations | seconds | evals/s | distinct IR |")
    print("|---|---:|---:|---:|---:|---:|")
    total_evals = total_seconds = 0.0
    for bitcode in median_tus(os.path.join(args.work, "records"), args.tus):
        with open(bitcode[:-3] + ".json") as handle:
            meta = json.load(handle)
        with tempfile.TemporaryDirectory(prefix="llmcc-speed-") as workdir:
            evaluator = recorded_evaluator(bitcode, workdir, 30.0)
            evaluator.baseline()
            start = time.perf_counter()
            _, tried = tune(evaluator, [], args.budget, 3600, random.Random(1), jobs=args.jobs)
            seconds = time.perf_counter() - start
            distinct = evaluator.distinct_ir
        total_evals += len(tried)
        total_seconds += seconds
        name = os.path.basename(meta["source"])
        print(f"| {name} | {os.path.getsize(bitcode) / 1024:.0f} | {len(tried)} | "
              f"{seconds:.1f} | {len(tried) / seconds:.1f} | {distinct} |")
    print(f"\nall: {total_evals / total_seconds:.1f} evaluations/s with {args.jobs} workers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

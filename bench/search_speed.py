"""Autotuner throughput: candidate evaluations per second on recorded TUs.

    .venv/bin/python bench/search_speed.py --work ~/.cache/llmcc-corpus [--tus 8] [--budget 60]
    .venv/bin/python bench/search_speed.py --work ~/.cache/llmcc-corpus --pick random --tus 20

Takes TUs recorded by `python -m llmcc.train.corpus` (`median`: those whose bitcode size is
closest to the median; `random`: a seeded sample of the whole corpus, so large TUs weigh in as
often as they occur), runs `llmcc.search.tune` on each with the given budget and worker threads,
and prints evaluations per second (and how many distinct optimised modules were measured: the
rest found IR already measured and skipped code generation). "all" divides total evaluations
by total seconds, so slow (large) TUs count by the time they take.
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
from llmcc.train.measure import recorded_evaluator


def pick_tus(records: str, count: int, how: str) -> list[str]:
    paths = sorted(glob.glob(os.path.join(records, "*", "*.bc")))
    if not paths:
        raise SystemExit(f"no recorded TUs under {records}: run python -m llmcc.train.corpus")
    if how == "random":
        return random.Random(1).sample(paths, min(count, len(paths)))
    middle = statistics.median(os.path.getsize(p) for p in paths)
    return sorted(paths, key=lambda p: abs(os.path.getsize(p) - middle))[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("--tus", type=int, default=8)
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--pick", choices=("median", "random"), default="median")
    args = parser.parse_args()
    print("| TU | bitcode KB | evaluations | seconds | evals/s | distinct IR |")
    print("|---|---:|---:|---:|---:|---:|")
    total_evals = total_seconds = 0.0
    rates = []
    for bitcode in pick_tus(os.path.join(args.work, "records"), args.tus, args.pick):
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
        rates.append(len(tried) / seconds)
        name = os.path.basename(meta["source"])
        print(f"| {name} | {os.path.getsize(bitcode) / 1024:.0f} | {len(tried)} | "
              f"{seconds:.1f} | {len(tried) / seconds:.1f} | {distinct} |")
    print(f"\nall: {total_evals / total_seconds:.1f} evaluations/s with {args.jobs} workers; "
          f"median TU {statistics.median(rates):.1f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

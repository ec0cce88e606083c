"""Does the autotuner beat random search? The same test-split TUs at the same budget.

    .venv/bin/python bench/search_quality.py --work ~/.cache/llmcc-corpus [--per-package 10]

For a seeded sample of recorded TUs of the test split (packages the popular lists were not
chosen on), prints the geomean text+data saving vs clang -Oz of:
  - random lists: LLVM's -Oz pipeline, then random lists (how the references in NOTES.md were
    measured), at the budget and at twice the budget;
  - the search without seeds: random lists and mutations of the five best;
  - the search as `LLMCC_ADVISOR=search` runs it: seeded with the shipped popular lists.
Each strategy gets its own evaluator, so none profits from another's measurements, and the
same random seed per TU. Winners are not minimised (that never changes their size). Finished
TUs are kept in `<work>/bench/search-quality-<budget>.jsonl`, so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile

from llmcc.advisor.popular import PopularAdvisor
from llmcc.optimize import BaselineUnusable
from llmcc.passes import parse, to_text
from llmcc.search import tune
from llmcc.train.dataset import split_of
from llmcc.train.measure import geomean_saving, recorded_evaluator, run_resumable, sample_tus

# name, budget multiple, seeded with the popular lists, share of fresh random lists
STRATEGIES = (("random lists", 1, False, 1.0), ("random lists, twice the budget", 2, False, 1.0),
              ("search, no seeds", 1, False, 0.3), ("search (LLMCC_ADVISOR=search)", 1, True, 0.3))


def _compare(job: tuple[str, str, int, float, list[str]]) -> dict:
    """Worker: every strategy on one TU."""
    package, bitcode, budget, timeout, seeds = job
    row = {"tu": os.path.basename(bitcode), "package": package, "sizes": []}
    for _name, times, seeded, explore in STRATEGIES:
        with tempfile.TemporaryDirectory(prefix="llmcc-quality-") as workdir:
            evaluator = recorded_evaluator(bitcode, workdir, timeout)
            try:
                row["baseline"] = evaluator.baseline().size
            except BaselineUnusable as err:
                return {**row, "error": str(err)}
            best, _ = tune(evaluator, [parse(s) for s in seeds] if seeded else [],
                           budget * times, 3600, random.Random(row["tu"]), jobs=1,
                           explore=explore)
        row["sizes"].append(best.size)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("--budget", type=int, default=60, help="evaluations per TU")
    parser.add_argument("--per-package", type=int, default=10)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    tus = [(package, path) for package, path in
           sample_tus(os.path.join(args.work, "records"), args.per_package, args.seed)
           if split_of(package) == "test"]
    if not tus:
        raise SystemExit(f"no recorded test-split TUs under {args.work}: run "
                         "python -m llmcc.train.corpus with test packages (e.g. zlib, bc, zstd)")
    seeds = [to_text(p) for p in PopularAdvisor.load().lists]
    path = os.path.join(args.work, "bench", f"search-quality-{args.budget}.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    done = run_resumable(path, [(pkg, tu, args.budget, args.timeout, seeds) for pkg, tu in tus],
                         _compare, args.jobs)
    wanted = {os.path.basename(tu) for _, tu in tus}
    rows = [row for tu, row in done.items() if tu in wanted and "error" not in row]
    packages = sorted({row["package"] for row in rows})
    print(f"\n{len(rows)} test-split TUs ({', '.join(packages)}), budget {args.budget}\n")
    print("| strategy | evaluations per TU | geomean saving vs -Oz | TUs improved |")
    print("|---|---:|---:|---:|")
    for i, (name, times, _, _) in enumerate(STRATEGIES):
        improved = sum(1 for row in rows if row["sizes"][i] < row["baseline"])
        print(f"| {name} | {args.budget * times} | {geomean_saving(rows, [i]):.2f}% | "
              f"{improved}/{len(rows)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

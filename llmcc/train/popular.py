"""Regenerate the `popular` advisor's data file from recorded training TUs.

    python -m llmcc.train.popular --work ~/.cache/llmcc-corpus

Every sampled TU (from `llmcc.train.corpus` records) is measured with clang's own pipeline and
with each list of one shared, seeded pool of random pass lists, exactly as the wrapper measures
(same codegen flags, same size, same symbol check). Lists are then chosen greedily on the train
packages: each next list is the one that adds the most geometric-mean saving when the smallest
of the chosen lists (or clang's pipeline, whichever is smaller) is kept per TU. The test
packages give the figures written beside the lists. Resumable: finished TUs are kept in
`<work>/popular/results.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile

from llmcc.advisor.popular import DATA_FILE
from llmcc.files import write_atomic
from llmcc.optimize import BaselineUnusable
from llmcc.passes import parse, random_list, to_text
from llmcc.train.dataset import split_of
from llmcc.train.measure import (
    geomean_saving,
    greedy,
    recorded_evaluator,
    run_resumable,
    sample_tus,
)


def make_pool(size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [to_text(random_list(rng)) for _ in range(size)]


def _measure(job: tuple[str, str, list[str], float]) -> dict:
    """Worker: baseline and every pool list on one TU."""
    package, bitcode, pool, timeout = job
    with tempfile.TemporaryDirectory(prefix="llmcc-popular-") as workdir:
        evaluator = recorded_evaluator(bitcode, workdir, timeout)
        try:
            baseline = evaluator.baseline()
        except BaselineUnusable as err:
            return {"tu": os.path.basename(bitcode), "package": package, "error": str(err)}
        sizes = [evaluator.candidate(parse(text)).size for text in pool]
    return {"tu": os.path.basename(bitcode), "package": package, "baseline": baseline.size,
            "sizes": sizes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("--pool", type=int, default=64, help="random lists tried on every TU")
    parser.add_argument("--per-package", type=int, default=40)
    parser.add_argument("--packages", help="comma-separated: only these recorded packages")
    parser.add_argument("--top", type=int, default=10, help="lists kept in the data file")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--out", default=DATA_FILE)
    args = parser.parse_args(argv)

    tus = sample_tus(os.path.join(args.work, "records"), args.per_package, args.seed,
                     args.packages.split(",") if args.packages else None)
    results_path = os.path.join(args.work, "popular", f"results-{args.pool}-{args.seed}.jsonl")
    os.makedirs(os.path.dirname(results_path), exist_ok=True)
    # The pool is kept beside the results: they index into it, and the vocabulary may grow.
    pool_path = results_path.replace("results-", "pool-").replace(".jsonl", ".json")
    if os.path.exists(pool_path):
        with open(pool_path) as handle:
            pool = json.load(handle)
    else:
        pool = make_pool(args.pool, args.seed)
        write_atomic(pool_path, json.dumps(pool, indent=0).encode())
    print(f"{len(tus)} TUs, {len(pool)} lists each", flush=True)
    done = run_resumable(results_path, [(pkg, path, pool, args.timeout) for pkg, path in tus],
                         _measure, args.jobs)

    wanted = {os.path.basename(path) for _, path in tus}
    rows = [row for tu, row in done.items() if tu in wanted and "sizes" in row]
    train = [row for row in rows if split_of(row["package"]) == "train"]
    test = [row for row in rows if split_of(row["package"]) == "test"]
    chosen = greedy(train, len(pool), args.top)
    report = {
        f"top{k}": {"train": round(geomean_saving(train, chosen[:k]), 3),
                    "test": round(geomean_saving(test, chosen[:k]), 3)}
        for k in (1, 3, 5, 10) if k <= len(chosen)}
    report["oracle_pool"] = {"train": round(geomean_saving(train, list(range(len(pool)))), 3),
                             "test": round(geomean_saving(test, list(range(len(pool)))), 3)}
    data = {
        "lists": [{"passes": pool[i],
                   "wins_train": sum(1 for r in train if r["sizes"][i] is not None
                                     and r["sizes"][i] < r["baseline"])}
                  for i in chosen],
        "provenance": {
            "command": "python -m llmcc.train.popular " + " ".join(argv or sys.argv[1:]),
            "pool": args.pool, "seed": args.seed, "per_package": args.per_package,
            "train_packages": sorted({r["package"] for r in train}),
            "test_packages": sorted({r["package"] for r in test}),
            "train_tus": len(train), "test_tus": len(test),
            "geomean_saving_percent": report,
        },
    }
    write_atomic(args.out, (json.dumps(data, indent=1) + "\n").encode())
    print(json.dumps(data["provenance"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

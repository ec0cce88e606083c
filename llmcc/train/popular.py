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
import math
import os
import random
import sys
import tempfile
from multiprocessing import Pool

from llmcc.files import write_atomic
from llmcc.optimize import BaselineUnusable, Evaluator
from llmcc.passes import parse, random_list, to_text
from llmcc.progress import StatusLine, bar
from llmcc.toolchain import check_tools, default_clang
from llmcc.train.dataset import owned_tus, split_of

DATA_FILE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "advisor", "popular.json")


def sample_tus(records: str, per_package: int, seed: int,
               packages: list[str] | None = None) -> list[tuple[str, str]]:
    """(package, bitcode path) pairs: up to `per_package` of each package's own TUs
    (`dataset.owned_tus`: a TU several packages recorded is sampled from one only)."""
    chosen = []
    for package, tus in sorted(owned_tus(records).items()):
        if packages and package not in packages:
            continue
        paths = [os.path.join(records, package, tu + ".bc") for tu in tus]
        random.Random(f"{seed}:{package}").shuffle(paths)  # stable as packages are added
        chosen.extend((package, path) for path in paths[:per_package])
    return chosen


def make_pool(size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [to_text(random_list(rng)) for _ in range(size)]


def recorded_evaluator(bitcode: str, workdir: str, timeout: float) -> Evaluator:
    """An Evaluator for a TU saved by LLMCC_RECORD, measuring exactly as its compile would."""
    with open(bitcode[:-3] + ".json") as handle:
        meta = json.load(handle)
    tools = check_tools(default_clang("", os.environ.get("PATH", ""), frozenset()), "")
    return Evaluator(tuple(meta["codegen"]), meta["pic"], tools, bitcode, workdir, timeout)


def read_rows(path: str) -> list[dict]:
    """The result rows a run appended to `path` so far (none if it never ran)."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def run_appending(path: str, jobs: list, worker, processes: int) -> list[dict]:
    """Run `worker` over `jobs` in a process pool, appending each result row to `path` as it
    arrives, so a run that is stopped keeps everything it finished. Returns the new rows."""
    rows = []
    line = StatusLine()
    with open(path, "a") as out, Pool(processes) as workers:
        for n, row in enumerate(workers.imap_unordered(worker, jobs), 1):
            out.write(json.dumps(row) + "\n")
            out.flush()
            rows.append(row)
            line.show(f"{os.path.basename(path)}: {bar(n, len(jobs))} {n}/{len(jobs)}")
    line.finish()
    return rows


def run_resumable(path: str, jobs: list, worker, processes: int) -> dict[str, dict]:
    """`run_appending` for the jobs whose TU (job[1]'s file name) has no row in `path` yet.
    Returns every row, old and new, by TU."""
    done = {row["tu"]: row for row in read_rows(path)}
    todo = [job for job in jobs if os.path.basename(job[1]) not in done]
    done.update((row["tu"], row) for row in run_appending(path, todo, worker, processes))
    return done


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


def best_size(row: dict, chosen: list[int]) -> int:
    """Smallest verified size among the chosen lists, never above the baseline."""
    sizes = [row["sizes"][i] for i in chosen if row["sizes"][i] is not None]
    return min([row["baseline"], *sizes])


def geomean_saving(rows: list[dict], chosen: list[int]) -> float:
    """Geometric-mean size reduction vs clang over TUs, in percent."""
    rows = [row for row in rows if row["baseline"] > 0]  # an empty object cannot shrink
    if not rows:
        return 0.0
    logs = [math.log(best_size(row, chosen) / row["baseline"]) for row in rows]
    return 100.0 * (1.0 - math.exp(sum(logs) / len(logs)))


def greedy(rows: list[dict], pool_size: int, count: int) -> list[int]:
    """Pool indices in the order that adds the most saving at each step."""
    chosen: list[int] = []
    for _ in range(count):
        candidates = [i for i in range(pool_size) if i not in chosen]
        if not candidates:
            break
        best = max(candidates, key=lambda i: geomean_saving(rows, [*chosen, i]))
        if geomean_saving(rows, [*chosen, best]) <= geomean_saving(rows, chosen):
            break
        chosen.append(best)
    return chosen


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

"""Label recorded TUs: the best minimised list per TU, and the popular lists broadcast to all.

    python -m llmcc.train.labels --work ~/.cache/llmcc-corpus --budget 60 --per-package 60

Phase 1 (search) runs `llmcc.search.tune` on each sampled TU, seeded with LLVM's -Oz pipeline
and the shipped popular lists, and minimises the winner. Phase 2 (broadcast) measures the N most
frequent winners of the train split on every TU, as the LLM Compiler paper broadcast its top
lists, so a ranker can be trained as well as a generator. Each TU carries its package's fixed
split (`popular.split_of`). Both phases append to `<work>/labels/*.jsonl` and resume where they
stopped, so a rerun with nothing left to do just prints the headroom table of the test split.
`--write-popular` makes the best ten broadcast lists (chosen on train) the popular advisor's data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from collections import Counter

from llmcc.advisor.popular import PopularAdvisor
from llmcc.files import write_atomic
from llmcc.optimize import BaselineUnusable
from llmcc.passes import parse, to_text
from llmcc.search import minimise, tune
from llmcc.train.popular import (
    DATA_FILE,
    geomean_saving,
    greedy,
    read_rows,
    recorded_evaluator,
    run_appending,
    run_resumable,
    sample_tus,
    split_of,
)


def _search_one(job: tuple[str, str, int, float, list[str]]) -> dict:
    """Worker: search and minimise one TU."""
    package, bitcode, budget, timeout, seeds = job
    row = {"tu": os.path.basename(bitcode), "package": package, "split": split_of(package)}
    with tempfile.TemporaryDirectory(prefix="llmcc-label-") as workdir:
        evaluator = recorded_evaluator(bitcode, workdir, timeout)
        try:
            baseline = evaluator.baseline()
        except BaselineUnusable as err:
            return {**row, "error": str(err)}
        best, tried = tune(evaluator, [parse(s) for s in seeds], budget, 3600,
                           random.Random(row["tu"]), jobs=1)
        passes = None
        if best.passes is not None:
            passes = minimise(evaluator, best.passes, best.size)
    return {**row, "baseline": baseline.size, "size": best.size, "evaluated": len(tried),
            "passes": None if passes is None else to_text(passes)}


def _broadcast_one(job: tuple[str, str, list[str], float]) -> dict:
    """Worker: the given broadcast lists on one TU (None: rejected by verification)."""
    _package, bitcode, lists, timeout = job
    with tempfile.TemporaryDirectory(prefix="llmcc-label-") as workdir:
        evaluator = recorded_evaluator(bitcode, workdir, timeout)
        evaluator.baseline()
        sizes = {text: evaluator.candidate(parse(text)).size for text in lists}
    return {"tu": os.path.basename(bitcode), "sizes": sizes}


def broadcast(path: str, rows: list[dict], records: str, lists: list[str], timeout: float,
              jobs: int) -> dict[str, list[int | None]]:
    """Sizes of `lists` on every TU of `rows`, by TU, in the order of `lists`.

    Measurements are kept per (TU, list) in `path`, so when a larger corpus changes the most
    frequent winners, an extending run measures only the new lists and the new TUs.
    """
    measured: dict[str, dict[str, int | None]] = {row["tu"]: {} for row in rows}
    for row in read_rows(path):
        measured.setdefault(row["tu"], {}).update(row["sizes"])
    todo = [(row["package"], os.path.join(records, row["package"], row["tu"]),
             [text for text in lists if text not in measured[row["tu"]]], timeout)
            for row in rows]
    for row in run_appending(path, [job for job in todo if job[2]], _broadcast_one, jobs):
        measured[row["tu"]].update(row["sizes"])
    return {row["tu"]: [measured[row["tu"]][text] for text in lists] for row in rows}


def headroom(rows: list[dict], broadcast: list[str]) -> list[tuple[str, float]]:
    """(what, geomean % saved vs -Oz) on the given TUs; rows need `sizes` over `broadcast`."""
    n = len(broadcast)
    single = max(range(n), key=lambda i: geomean_saving(rows, [i])) if n else None
    table = []
    if single is not None:
        table.append((f"best single fixed list ({broadcast[single][:40]}...)",
                      geomean_saving(rows, [single])))
    for k in (1, 3, 5, 10):
        if k <= n:
            table.append((f"popular top-{k}, -Oz fallback", geomean_saving(rows, list(range(k)))))
    oracle = [{"baseline": r["baseline"], "sizes": [r["size"]]} for r in rows]
    table.append(("per-TU search (oracle)", geomean_saving(oracle, [0])))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("--budget", type=int, default=60, help="search evaluations per TU")
    parser.add_argument("--per-package", type=int, default=60)
    parser.add_argument("--broadcast", type=int, default=20, help="lists broadcast to all TUs")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--write-popular", action="store_true",
                        help="write the ranked lists to the popular advisor's data file")
    args = parser.parse_args(argv)

    where = os.path.join(args.work, "labels")
    os.makedirs(where, exist_ok=True)
    tus = sample_tus(os.path.join(args.work, "records"), args.per_package, args.seed)
    seeds = [to_text(p) for p in PopularAdvisor.load().lists]
    searched = run_resumable(os.path.join(where, f"search-{args.budget}.jsonl"),
                    [(pkg, path, args.budget, args.timeout, seeds) for pkg, path in tus],
                    _search_one, args.jobs)
    sampled = {os.path.basename(path) for _, path in tus}  # rows of TUs since dropped stay out
    rows = [r for r in searched.values() if "error" not in r and r["tu"] in sampled]
    wins = Counter(r["passes"] for r in rows if r["split"] == "train" and r["passes"])
    lists = [text for text, _ in wins.most_common(args.broadcast)]
    sizes = broadcast(os.path.join(where, f"broadcast-{args.budget}.jsonl"), rows,
                      os.path.join(args.work, "records"), lists, args.timeout, args.jobs)
    for row in rows:
        row["sizes"] = sizes[row["tu"]]
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    order = greedy(train, len(lists), len(lists))  # broadcast lists, best first on train
    ranked = [lists[i] for i in order]
    for row in rows:
        row["sizes"] = [row["sizes"][i] for i in order]
    validation = sum(1 for r in rows if r["split"] == "validation")
    print(f"\n{len(train)} train TUs, {validation} validation TUs, {len(test)} test TUs "
          f"({', '.join(sorted({r['package'] for r in test}))})\n")
    print("| on the test split | geomean saving vs -Oz |\n|---|---|")
    for what, saving in headroom(test, ranked):
        print(f"| {what} | {saving:.2f}% |")
    improved = sum(1 for r in test if r["size"] < r["baseline"])
    larger = sum(1 for r in test if r["size"] > r["baseline"])
    print(f"| TUs improved by search | {improved}/{len(test)} |")
    print(f"| regressions after verification | {larger} |")
    winners = [len(r["passes"].split()) for r in rows if r["passes"]]
    print(f"\nminimised winning lists: {len(winners)}, distinct on train {len(wins)}, "
          f"mean length {sum(winners) / max(1, len(winners)):.1f}")
    if args.write_popular:
        data = {"lists": [{"passes": text} for text in ranked[:10]],
                "provenance": {"command": "python -m llmcc.train.labels " + " ".join(
                    argv or sys.argv[1:]), "train_tus": len(train), "test_tus": len(test),
                    "headroom_test": {what: round(v, 3) for what, v in headroom(test, ranked)}}}
        write_atomic(DATA_FILE, (json.dumps(data, indent=1) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

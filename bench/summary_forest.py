"""How much the TU summary says about which lists suit a TU, read by a forest of trees instead
of the model: the forest advisor, scored where the model is scored.

    .venv/bin/python bench/summary_forest.py [--folds 3] [--trees 200] [--leaf 5] [--after N]
        [--language c++ [--only-language]]
    (needs scikit-learn: pip install .[train])

Every number of a TU's summary (llmcc.summary: module, call graph, globals, opcode, type,
intrinsic and library-call counts, the three largest functions) becomes a feature, log(1 + n),
and an extremely randomised forest learns from the training TUs each broadcast list's log size
ratio to clang -Oz (llmcc.train.forest). A held-out TU's k lists are then chosen greedily, as
the popular lists are on all training TUs, on the training TUs that share its leaves, each
weighted as the forest weighs it (1 / leaf size, summed over the trees): the forest advisor
(llmcc.advisor.forest), each fold's forest written and read as `llmcc-ctl train --forest`
writes the shipped one and a compile reads it.

Held-out sets, each scored as `llmcc-ctl eval` scores: the train packages dealt into folds as
bench/model_choice.py deals them, the validation split, and the test TUs among the first
--test-first of the seeded test sample. The test TUs ranked after those are not read unless
--after N asks for those ranked after N: they are kept for decisions on candidates
(`llmcc-ctl eval --after N`). `--language` scores the held-out TUs of one language only (every
forest and list still learns from all the training TUs).
"""

from __future__ import annotations

import argparse
import sys

from model_choice import folds_of

from llmcc.advisor.forest import Forest
from llmcc.train import forest, labelled
from llmcc.train.evaluate import KS, labelled_after, score, usable
from llmcc.train.headroom import as_pool_rows
from llmcc.train.measure import geomean_saving, greedy


def forest_orders(train_rows: list[dict], held_rows: list[dict], indices: list[int],
                  texts: list[str], trees: int, leaf: int) -> dict[int, list[list[int]]]:
    """For each k, each held-out TU's k lists as the forest advisor chooses them, its file
    grown on `train_rows` as `llmcc-ctl train --forest` grows one (greedy choices are
    incremental: a TU's k lists are the first k of its max(KS))."""
    pool = as_pool_rows(train_rows, indices, False)
    ratios = forest.log_ratios([r["baseline"] for r in pool], [r["sizes"] for r in pool])
    grown = Forest.from_bytes(forest.shipped([r["summary"] for r in train_rows], ratios, texts,
                                             trees=trees, leaf=leaf))
    chosen = [grown.choose(r["summary"], max(KS)) for r in held_rows]
    return {k: [order[:k] for order in chosen] for k in KS}


def scores(pool: list[dict], orders: dict[int, list[list[int]]]) -> list[float]:
    return [score(pool, orders[k], k)[0] for k in KS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--trees", type=int, default=forest.TREES)
    parser.add_argument("--leaf", type=int, default=forest.LEAF,
                        help="fewest training TUs in a leaf")
    parser.add_argument("--test-first", type=int, default=1050,
                        help="test TUs read: the first N of the seeded sample")
    parser.add_argument("--after", type=int, default=0,
                        help="also score the test TUs the sample ranks after its first N: a "
                        "decision set, read once the decision on it is registered")
    parser.add_argument("--language", choices=("c", "c++"),
                        help="score only the held-out TUs of this language")
    parser.add_argument("--only-language", action="store_true",
                        help="grow the forests and rank the popular lists on the training TUs "
                        "of --language alone")
    args = parser.parse_args()
    if args.only_language and not args.language:
        parser.error("--only-language needs --language")
    every = labelled.read_all(args.dataset)
    registry = labelled.read_lists(args.dataset)
    indices = registry.get("broadcast", [])
    texts = [registry["lists"][i] for i in indices]
    rows = usable(every)
    train = [r for r in rows if r["split"] == "train"]
    if not train or not indices:
        parser.error(f"no train TUs with broadcast sizes in {args.dataset}")
    late = labelled_after(every, args.test_first)
    held_out = [(f"train packages, {args.folds} folds", [
        ([r for r in train if r["package"] not in fold], [r for r in train if r["package"] in fold])
        for fold in folds_of(train, args.folds, 0)])]
    for split, name in (("validation", "validation"), ("test", f"test, first {args.test_first}")):
        held_out.append((name, [(train, [r for r in rows
                                        if r["split"] == split and r["tu"] not in late])]))
    if args.after:
        decision = labelled_after(every, args.after)
        held_out.append((f"test, after the first {args.after}",
                         [(train, [r for r in rows if r["tu"] in decision])]))
    print("| % below clang -Oz (geomean), k = " + " / ".join(map(str, KS))
          + " | TUs | popular | forest | best broadcast list per TU |")
    print("|---|---:|---|---|---:|")
    for name, parts in held_out:
        pool: list[dict] = []
        popular: dict[int, list[list[int]]] = {k: [] for k in KS}
        by_forest: dict[int, list[list[int]]] = {k: [] for k in KS}
        for inside, outside in parts:
            outside = [r for r in outside if args.language in (None, r["language"])]
            if args.only_language:
                inside = [r for r in inside if r["language"] == args.language]
            part = as_pool_rows(outside, indices, False)
            pool += part
            order = greedy(as_pool_rows(inside, indices, False), len(indices), max(KS))
            chosen = forest_orders(inside, outside, indices, texts, args.trees, args.leaf)
            for k in KS:
                popular[k] += [order[:k]] * len(part)
                by_forest[k] += chosen[k]
        if not pool:  # e.g. no C++ package is in validation
            print(f"| {name} | 0 | | | |")
            continue
        oracle = geomean_saving(pool, list(range(len(indices))))
        print(f"| {name} | {len(pool)} | "
              + " / ".join(f"{v:.2f}" for v in scores(pool, popular)) + " | "
              + " / ".join(f"{v:.2f}" for v in scores(pool, by_forest)) + f" | {oracle:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

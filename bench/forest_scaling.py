"""Would more training data or more candidate lists close the forest's gap to the popular lists
at k = 10? Grow the forest (and choose the popular lists) on less of either and see the slope.

    .venv/bin/python bench/forest_scaling.py packages [--split validation] [--shares 0.25,0.5,0.75]
    .venv/bin/python bench/forest_scaling.py lists [--split validation] [--counts 22,43,64]
    .venv/bin/python bench/forest_scaling.py validation      # grown on train + validation, on test
    (needs scikit-learn: pip install .[train])

`packages`: grown on a seeded random share of the train packages (a team adding packages adds
whole ones), `--seeds` draws each. `lists`: the sizes of every list outside a seeded random
subset are counted as refused, for the training and the held TUs alike, so the
forest, the popular lists and the oracle (best of the subset per TU) all choose among the
subset. `validation`: grown on the train and validation splits together and scored on test
(what a forest shipped after its settings were decided on validation could learn from). Each
forest grows as `llmcc-ctl train --forest` grows the shipped one; scores are `llmcc-ctl eval`'s
geomean % below clang -Oz from the measured broadcast sizes (nothing is compiled). Prints one
markdown table, a row a grown forest; the last row of `packages` and `lists` is all of it.
"""

from __future__ import annotations

import argparse
import random
import time

from forest_knobs import Variant, variant_forest

from llmcc.train import forest as grow
from llmcc.train.evaluate import (
    KS,
    forest_ranker,
    held_split,
    model_orders,
    never_run_positions,
    score,
)
from llmcc.train.measure import greedy


def refused_outside(pool: list[dict], keep: set[int]) -> list[dict]:
    """Pool rows with every list outside `keep` counted as refused."""
    return [{**row, "sizes": [size if j in keep else None for j, size in enumerate(row["sizes"])]}
            for row in pool]


def row(name: str, train: list[dict], pool: list[dict], held: list[dict], summaries: list[dict],
        texts: list[str], lists: list[int]) -> str:
    """One table row: the forest grown on (train, pool) and the popular lists chosen there, each
    at every k, and the best of `lists` per held TU."""
    started = time.time()
    orders = model_orders(summaries, texts, forest_ranker(variant_forest(train, pool, texts,
                                                                          Variant())))
    popular = greedy(pool, len(texts), max(KS))
    forest = [score(held, orders[k], k)[0] for k in KS]
    fixed = [score(held, [popular[:k]] * len(held), k)[0] for k in KS]
    oracle = score(held, [lists] * len(held), len(lists))[0]
    return (f"| {name} | {len(train)} | {len(lists)} | "
            + " | ".join(f"{value:.2f}%" for value in forest + fixed + [oracle])
            + f" | {(time.time() - started) / 60:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("packages", "lists", "validation"))
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--shares", default="0.25,0.5,0.75", help="of the train packages")
    parser.add_argument("--counts", default="22,43,64", help="of the runnable lists")
    parser.add_argument("--seeds", type=int, default=3, help="draws of each share or count")
    parser.add_argument("--dataset", default="data/dataset")
    args = parser.parse_args()
    train, pool, texts = grow.training_set(args.dataset)
    split = "test" if args.what == "validation" else args.split
    held, summaries, _ = held_split(args.dataset, split)
    never = set(never_run_positions(texts))
    lists = [j for j in range(len(texts)) if j not in never]
    ks = " | ".join(f"k = {k}" for k in KS)
    print(f"| {len(held)} {split} TUs, % below clang -Oz | train TUs | lists | forest {ks} | "
          f"popular {ks} | best list per TU | minutes |")
    print("|---|" + "---:|" * (2 * len(KS) + 4))
    if args.what == "validation":
        more_pool, more_summaries, _ = held_split(args.dataset, "validation")
        more = [{"summary": summary} for summary in more_summaries]  # all variant_forest reads
        print(row("train", train, pool, held, summaries, texts, lists), flush=True)
        print(row("train + validation", train + more, pool + more_pool, held, summaries, texts,
                  lists), flush=True)
        return 0
    if args.what == "packages":
        packages = sorted({r["package"] for r in train})
        for share in map(float, args.shares.split(",")):
            for seed in range(args.seeds):
                kept = set(random.Random(seed).sample(packages, round(share * len(packages))))
                rows = [i for i, r in enumerate(train) if r["package"] in kept]
                print(row(f"{share:.0%} of {len(packages)} packages, seed {seed}",
                          [train[i] for i in rows], [pool[i] for i in rows], held, summaries,
                          texts, lists), flush=True)
    else:
        for count in map(int, args.counts.split(",")):
            for seed in range(args.seeds):
                keep = sorted(random.Random(seed).sample(lists, count))
                print(row(f"{count} of {len(lists)} lists, seed {seed}", train,
                          refused_outside(pool, set(keep)), refused_outside(held, set(keep)),
                          summaries, texts, keep), flush=True)
    print(row("all of it", train, pool, held, summaries, texts, lists), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

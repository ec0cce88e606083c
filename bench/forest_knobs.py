"""The forest's settings tried on a held split: does another leaf size, split width, number of
trees or target grow a forest that chooses better than the shipped settings?

    .venv/bin/python bench/forest_knobs.py [--split validation] [VARIANT ...]
    (needs scikit-learn: pip install .[train])

Each VARIANT (default: all of VARIANTS) is grown on the train split as `llmcc-ctl train
--forest` grows the shipped forest but for what it names, written to a forest file in memory
and read back, then scored on the split at each k of `llmcc-ctl eval` (the geomean % below
clang -Oz, from the measured broadcast sizes; nothing is compiled). A target other than `raw`
only changes what the trees learn, so which TUs share a leaf: the lists are still chosen on
those TUs' measured savings, as a compile chooses them. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from llmcc.advisor.forest import Forest
from llmcc.train import forest as grow
from llmcc.train.evaluate import KS, forest_ranker, held_split, model_orders, score


def relative(ratios: np.ndarray) -> np.ndarray:
    """Each TU's log ratios over its best list's: which lists suit it, not how much it has."""
    best = ratios.min(axis=1, keepdims=True)
    return np.where(best < 0, ratios / np.where(best < 0, -best, 1.0), 0.0)


def near_best(ratios: np.ndarray) -> np.ndarray:
    """1 for each list within 0.1% of the TU's best (where some list shrinks it), else 0."""
    best = ratios.min(axis=1, keepdims=True)
    return ((ratios <= best + 0.001) & (best < 0)).astype(float)


# name -> (what the trees learn from the log ratios, fewest TUs a leaf, split width, trees)
SHIPPED = (lambda ratios: ratios, grow.LEAF, grow.MAX_FEATURES, grow.TREES)
VARIANTS = {
    "shipped": SHIPPED,
    "leaf 2": (SHIPPED[0], 2, grow.MAX_FEATURES, grow.TREES),
    "leaf 10": (SHIPPED[0], 10, grow.MAX_FEATURES, grow.TREES),
    "leaf 20": (SHIPPED[0], 20, grow.MAX_FEATURES, grow.TREES),
    "max_features 0.6": (SHIPPED[0], grow.LEAF, 0.6, grow.TREES),
    "500 trees": (SHIPPED[0], grow.LEAF, grow.MAX_FEATURES, 500),
    "relative target": (relative, grow.LEAF, grow.MAX_FEATURES, grow.TREES),
    "near-best target": (near_best, grow.LEAF, grow.MAX_FEATURES, grow.TREES),
    "sqrt target": (lambda ratios: -np.sqrt(-ratios), grow.LEAF, grow.MAX_FEATURES,
                    grow.TREES),
}


def variant_forest(summaries: list[dict], ratios: np.ndarray, texts: list[str],
                   variant: tuple) -> Forest:
    """A forest file grown as `variant` says, read as a compile reads one."""
    target, leaf, max_features, trees = variant
    names = grow.feature_names(summaries)
    inputs = grow.feature_matrix(summaries, names)
    grown = grow.grow(inputs, target(ratios), trees=trees, leaf=leaf, max_features=max_features)
    return Forest.from_bytes(grow.forest_file(grow.to_arrays(grown, inputs, ratios), names,
                                              texts, {}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT",
                        help="of: " + ", ".join(repr(name) for name in VARIANTS))
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--dataset", default="data/dataset")
    args = parser.parse_args()
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"no variant {unknown[0]!r}")
    train, pool, texts = grow.training_set(args.dataset)
    ratios = grow.log_ratios([r["baseline"] for r in pool], [r["sizes"] for r in pool])
    held, summaries, _ = held_split(args.dataset, args.split)
    print(f"| {len(held)} {args.split} TUs, % below clang -Oz | "
          + " | ".join(f"k = {k}" for k in KS) + " | minutes |")
    print("|---|" + "---:|" * (len(KS) + 1))
    for name in args.variants or VARIANTS:
        started = time.time()
        grown = variant_forest([r["summary"] for r in train], ratios, texts, VARIANTS[name])
        orders = model_orders(summaries, texts, forest_ranker(grown))
        print(f"| {name} | " + " | ".join(f"{score(held, orders[k], k)[0]:.2f}%" for k in KS)
              + f" | {(time.time() - started) / 60:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Choosing the model's training settings without the test split: train packages held out.

    .venv/bin/python bench/model_choice.py [--folds 3] [--variant NAME=ARGS]... [--dataset DIR]

The train split's packages are dealt into folds (a seeded shuffle); for each fold and variant a
model is trained as `llmcc-ctl train` trains (llmcc.train.fit, with the variant's arguments) on
the other folds' TUs, and it chooses lists for the fold's TUs as a compile would. One table:
per variant and k, the geometric-mean % below clang -Oz over every held-out TU, beside the
popular lists chosen on the same training folds and the best broadcast list per TU. The test
split is never read. Variants are fit arguments, e.g. `--variant small="--dim 64 --layers 2"`.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import tempfile
import time

from llmcc.advisor.model_runtime import ModelRuntime
from llmcc.train import fit, labelled
from llmcc.train.evaluate import KS, MIN_GAINS, model_orders, model_ranker, orders_of, score, usable
from llmcc.train.headroom import as_pool_rows
from llmcc.train.measure import geomean_saving, greedy


def folds_of(rows: list[dict], count: int, seed: int) -> list[list[str]]:
    """The train packages dealt into `count` folds."""
    packages = sorted({r["package"] for r in rows})
    random.Random(seed).shuffle(packages)
    return [sorted(packages[i::count]) for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="fit arguments to compare (default: fit's own defaults)")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"default": ""}
    registry = labelled.read_lists(args.dataset)
    indices = registry.get("broadcast", [])
    texts = [registry["lists"][i] for i in indices]
    rows = [r for r in usable(labelled.read_all(args.dataset)) if r["split"] == "train"]
    if not rows or not indices:
        parser.error(f"no train TUs with broadcast sizes in {args.dataset}")
    held: list[dict] = []                    # pool rows of every held-out TU, fold by fold
    popular: list[list[int]] = []            # each held-out TU's popular order (its fold's)
    orders = {name: {k: [] for k in KS} for name in variants}
    stopping = {name: {gain: [] for gain in MIN_GAINS} for name in variants}  # at k = 3
    seconds = dict.fromkeys(variants, 0.0)
    for fold in folds_of(rows, args.folds, args.seed):
        inside = [r for r in rows if r["package"] not in fold]
        outside = [r for r in rows if r["package"] in fold]
        with tempfile.TemporaryDirectory(prefix="llmcc-model-choice-") as work:
            labelled.write_lists(work, registry)
            labelled.write_package(work, "train", {r["tu"]: r for r in inside})
            pool = as_pool_rows(outside, indices, False)
            held += pool
            order = greedy(as_pool_rows(inside, indices, False), len(indices), max(KS))
            popular += [order] * len(pool)
            summaries = [r["summary"] for r in outside]
            for name, extra in variants.items():
                model = os.path.join(work, "model.gguf")
                started = time.monotonic()
                fit.main(["--dataset", work, "--out", model, *shlex.split(extra)],
                         prog="bench/model_choice.py")
                seconds[name] += time.monotonic() - started
                with ModelRuntime(model) as runtime:
                    rank = model_ranker(runtime)
                    for k, chosen in model_orders(summaries, texts, rank).items():
                        orders[name][k] += chosen
                    for gain in MIN_GAINS:
                        stopping[name][gain] += orders_of(summaries, texts, rank, 3, gain)
    print(f"{len(held)} train TUs in {args.folds} folds of packages, each ranked by models "
          "trained on the other folds (% below clang -Oz, geometric mean):")
    print("| lists | " + " | ".join(f"k = {k}" for k in KS) + " | training, all folds |")
    print("|---|" + "---:|" * (len(KS) + 1))
    print("| popular | " + " | ".join(f"{score(held, popular, k)[0]:.2f}%" for k in KS) + " | |")
    for name in variants:
        print(f"| model `{name}` | "
              + " | ".join(f"{score(held, orders[name][k], k)[0]:.2f}%" for k in KS)
              + f" | {seconds[name] / 60:.1f} min |")
    oracle = geomean_saving(held, list(range(len(indices))))
    print(f"\nbest of the {len(indices)} broadcast lists per TU: {oracle:.2f}%")
    print("\nUp to 3 lists, none expected to save less than a threshold: % below -Oz "
          "(lists tried per TU)")
    print("| model | " + " | ".join(f"{100 * gain:.1f}%" for gain in MIN_GAINS) + " |")
    print("|---|" + "---:|" * len(MIN_GAINS))
    for name in variants:
        cells = [f"{score(held, stopping[name][gain], 3)[0]:.2f}% "
                 f"({sum(map(len, stopping[name][gain])) / len(held):.2f})"
                 for gain in MIN_GAINS]
        print(f"| `{name}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

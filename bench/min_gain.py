"""Fewer lists: what the forest saves, and how many lists it tries, for each k and min_gain.

    .venv/bin/python bench/min_gain.py [--split validation] [--after N] [--forest FILE]

A cold compile pays an opt and a code generation for every list it tries (docs/benchmark.md,
"Where a cold build's time goes"). With `min_gain` (LLMCC_MIN_GAIN, % of the TU's object) the
forest tries no list it expects to save less, so k is an upper bound and the lists tried per TU
are what a cold build pays. For each k and min_gain, on a split of the committed dataset (its
broadcast sizes, nothing compiled): the geomean % below clang -Oz and the lists tried per TU, as
`llmcc-ctl eval --forest` counts them. Prints one markdown table.
"""

from __future__ import annotations

import argparse

from llmcc.advisor.forest import FOREST_FILE, Forest
from llmcc.train.evaluate import forest_ranker, held_split, orders_of, score

KS = (1, 2, 3, 4, 5, 6, 8, 10)
MIN_GAINS = (0.0, 0.1, 0.2, 0.3, 0.5)  # %


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--after", type=int, default=0,
                        help="test TUs the seeded sample ranks after its first N only")
    parser.add_argument("--forest", default=FOREST_FILE)
    parser.add_argument("--dataset", default="data/dataset")
    args = parser.parse_args()
    held, summaries, texts = held_split(args.dataset, args.split, args.after)
    rank = forest_ranker(Forest.load(args.forest))
    print(f"| {len(held)} {args.split} TUs: % below clang -Oz (lists tried per TU) | "
          + " | ".join(f"min_gain {g}%" for g in MIN_GAINS) + " |")
    print("|---:|" + "---:|" * len(MIN_GAINS))
    for k in KS:
        cells = []
        for gain in MIN_GAINS:
            orders = orders_of(summaries, texts, rank, k, gain / 100)
            saving, _ = score(held, orders, k)
            cells.append(f"{saving:.2f}% ({sum(map(len, orders)) / len(orders):.2f})")
        print(f"| k = {k} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Would a compile choose its later lists better once it has measured its first ones?

    .venv/bin/python bench/observed_choice.py [--split validation] [--widths 0,0.002,0.005]

A compile measures every list it tries, so after its first list it knows what that list did to
this TU, which the forest only guessed from the summary. Here each next list is chosen on the
forest's neighbours reweighted by how alike they were in what the lists already tried did to
them: each neighbour's weight times exp(-d^2 / 2w^2) + `--floor`, d the difference of the log
size ratios (a list that did not shrink counts as 0, as the forest file keeps it) and w the
width. `--everyone S` adds every training TU with a share S of the weight, so a TU whose first
results are unlike its neighbours' can find others. Width 0 is the shipped forest's choice.
`--batch B` measures the first B lists together (a compile generates their code in one clang
run) before any is observed. Scored as `llmcc-ctl eval` scores, from the measured broadcast
sizes; nothing is compiled. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from llmcc.advisor.forest import FOREST_FILE, RATIO_SCALE, Forest, inputs
from llmcc.train.evaluate import KS, held_split, positions, score


def savings_matrix(forest: Forest) -> np.ndarray:
    """Training TU x list: the log size ratio the forest file keeps (0 where none shrank)."""
    start, lists, ratios = (np.asarray(forest.saving_start), np.asarray(forest.saving_list),
                            np.asarray(forest.saving_ratio))
    out = np.zeros((len(start) - 1, len(forest.texts)), dtype=np.float64)
    rows = np.repeat(np.arange(len(start) - 1), np.diff(start))
    out[rows, lists] = ratios
    return out


def observed(row: dict, in_split: list[int | None]) -> list[float | None]:
    """What each forest list did to a held TU, as the forest file keeps it (None: refused)."""
    out: list[float | None] = []
    for position in in_split:
        size = None if position is None else row["sizes"][position]
        out.append(None if size is None else
                   min(0.0, round(math.log(size / row["baseline"]) * RATIO_SCALE)))
    return out


def choose(prior: np.ndarray, matrix: np.ndarray, seen: list[float | None], k: int,
           width: float, floor: float, batch: int, never: frozenset[int]) -> list[int]:
    """Up to k lists greedily, as the forest does, but reweighting the TUs by each measured
    result once the first `batch` are measured together."""
    keep = np.flatnonzero(prior)  # only TUs with weight can count
    weights, matrix = prior[keep], matrix[keep]
    best_so_far = np.zeros(len(matrix))
    chosen: list[int] = []
    pending: list[int] = []
    for _ in range(k):
        gains = (weights[:, None] * (np.minimum(matrix, best_so_far[:, None])
                                     - best_so_far[:, None])).sum(axis=0)
        gains[list(never | set(chosen))] = np.inf
        best = int(np.argmin(gains))
        if not gains[best] < 0:
            break
        chosen.append(best)
        best_so_far = np.minimum(best_so_far, matrix[:, best])
        pending.append(best)
        if width and len(chosen) >= batch:
            for j in pending:
                if seen[j] is not None:
                    distance = (matrix[:, j] - seen[j]) / (width * RATIO_SCALE)
                    weights = weights * (np.exp(-0.5 * distance ** 2) + floor)
            pending = []
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--forest", default=FOREST_FILE)
    parser.add_argument("--widths", default="0,0.002,0.005,0.01,0.03")
    parser.add_argument("--floor", type=float, default=0.001)
    parser.add_argument("--everyone", type=float, default=0.0)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    held, summaries, texts = held_split(args.dataset, args.split)
    forest = Forest.load(args.forest)
    position = positions(texts)
    in_split = [position.get(passes) for passes in forest.lists]
    matrix = savings_matrix(forest)
    priors = []
    for summary in summaries:
        prior = np.zeros(len(matrix))
        for tu, weight in forest.neighbours(inputs(summary, forest.index)).items():
            prior[tu] = weight
        prior /= prior.sum()
        priors.append((1 - args.everyone) * prior + args.everyone / len(matrix))
    seen = [observed(row, in_split) for row in held]
    print(f"| {len(held)} {args.split} TUs, % below clang -Oz (floor {args.floor:g}, everyone "
          f"{args.everyone:g}, batch {args.batch}) | " + " | ".join(f"k = {k}" for k in KS)
          + " |")
    print("|---|" + "---:|" * len(KS))
    for width in (float(text) for text in args.widths.split(",")):
        # one choice of max(KS) lists a TU: each step depends only on the steps before it,
        # so its first k are the choice for k
        orders = [[in_split[j] for j in choose(prior, matrix, tu_seen, max(KS), width,
                                               args.floor, args.batch, forest.never)]
                  for prior, tu_seen in zip(priors, seen, strict=True)]
        print(f"| width {width:g} | "
              + " | ".join(f"{score(held, orders, k)[0]:.2f}%" for k in KS) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

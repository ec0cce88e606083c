"""The rule registered for the next forest (docs/forest.md, "The forest after it, by the same
rule"), as a command: may CANDIDATE replace the shipped forest?

    .venv/bin/python bench/forest_rule.py CANDIDATE [--split validation] [--margin 0.05]

It may if on the split (validation: the rule's) it is at most MARGIN points of geomean % below
clang -Oz behind both the shipped forest (llmcc/advisor/forest.bin in the work tree) and the
first forest (that file at FIRST_FOREST, read with git) at every k of `llmcc-ctl eval`, each
forest choosing as that command's table has it choose. Prints one table and the verdict;
exits 0 if the rule holds, 1 if not.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from llmcc.advisor.forest import FOREST_FILE, Forest
from llmcc.train.evaluate import KS, forest_ranker, held_split, model_orders, score

FIRST_FOREST = "0be277e"  # the commit that shipped the first forest


def savings(path: str, held, summaries: list[dict], texts: list[str]) -> dict[int, float]:
    """Geomean % below -Oz at each k of KS, as `llmcc-ctl eval --forest` scores it."""
    orders = model_orders(summaries, texts, forest_ranker(Forest.load(path)))
    return {k: score(held, orders[k], k)[0] for k in KS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("candidate", help="a forest file (llmcc-ctl train --forest --out FILE)")
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--margin", type=float, default=0.05, help="points (0.05)")
    parser.add_argument("--dataset", default="data/dataset")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    first = subprocess.run(["git", "show", f"{FIRST_FOREST}:llmcc/advisor/forest.bin"],
                           cwd=repo, capture_output=True, check=True).stdout
    held, summaries, texts = held_split(args.dataset, args.split)
    with tempfile.NamedTemporaryFile(suffix=".bin") as handle:
        handle.write(first)
        handle.flush()
        scores = {"candidate": savings(args.candidate, held, summaries, texts),
                  "shipped": savings(FOREST_FILE, held, summaries, texts),
                  "first": savings(handle.name, held, summaries, texts)}
    print(f"| {len(held)} {args.split} TUs, % below clang -Oz | "
          + " | ".join(f"k = {k}" for k in KS) + " |")
    print("|---|" + "---:|" * len(KS))
    for name, by_k in scores.items():
        print(f"| {name} | " + " | ".join(f"{by_k[k]:.2f}%" for k in KS) + " |")
    behind = [(name, k, scores[name][k] - scores["candidate"][k])
              for name in ("shipped", "first") for k in KS
              if scores["candidate"][k] < scores[name][k] - args.margin]
    if behind:
        print("the rule does not hold: the candidate is more than "
              f"{args.margin} points behind " + ", ".join(
                  f"the {name} forest at k = {k} ({gap:.2f})" for name, k, gap in behind))
        return 1
    print(f"the rule holds: at every k at most {args.margin} points behind the shipped and "
          "the first forest")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

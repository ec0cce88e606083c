"""Does the llama add anything to the forest? Each held TU's lists chosen on its forest
neighbours mixed with the llama's answer for it.

    .venv/bin/python bench/forest_and_model.py [--split validation] [--shares 0,0.1,0.25,0.5,1]

The forest weighs a TU's neighbours (llmcc.advisor.forest); the llama gives each list the
probability that it is the TU's best (llmcc.advisor.model_runtime.answer_weights), and the
model's coverage table what each list saved on the training TUs whose best was that one. Mixed,
the neighbours' weights (scaled to sum to 1 - share) and the llama's (to sum to share) choose
the k lists greedily as a compile's forest does (weighted_greedy): share 0 is the shipped
forest, share 1 the llama through the forest's choice. Scored as `llmcc-ctl eval` scores (the
geomean % below clang -Oz, from the measured broadcast sizes; nothing is compiled); prints one
markdown table. Needs no scikit-learn: the forest and the model as shipped.
"""

from __future__ import annotations

import argparse

from llmcc.advisor.forest import FOREST_FILE, RATIO_SCALE, Forest, weighted_greedy
from llmcc.advisor.model import DEFAULT_MODEL
from llmcc.advisor.model_runtime import (
    ModelRuntime,
    answer_weights,
    list_index,
    prompt_text,
    top_count,
)
from llmcc.summary import to_prompt
from llmcc.train.evaluate import KS, held_split, positions, score

Savings = list[tuple[float, dict[int, int]]]  # weighted_greedy's TUs: weight, list -> ratio


def model_savings(runtime: ModelRuntime, summary: dict, position: dict) -> Savings:
    """The llama's answer as weighted_greedy's TUs: one per list it may answer, weighted by its
    probability, keeping what its coverage row says each list saved (`position`: the model's
    candidate index -> the forest's, for the lists it may answer)."""
    top = runtime.top(prompt_text(to_prompt(summary)), top_count(max(KS), len(runtime.lists)))
    return [(weight, {position[i]: -round(saved * RATIO_SCALE)
                      for i, saved in enumerate(runtime.coverage[j])
                      if saved > 0 and i in position})
            for j, weight in answer_weights(top, runtime.lists).items()]


def mixed(forest: Savings, model: Savings, share: float) -> Savings:
    """Both sets of TUs, the forest's weights scaled to sum to 1 - share, the model's to
    share."""
    total = sum(weight for weight, _ in forest) or 1.0
    return ([((1 - share) * weight / total, saved) for weight, saved in forest]
            + [(share * weight, saved) for weight, saved in model])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--dataset", default="data/dataset")
    parser.add_argument("--shares", default="0,0.1,0.25,0.5,1")
    args = parser.parse_args()
    held, summaries, texts = held_split(args.dataset, args.split)
    forest = Forest.load(FOREST_FILE)
    in_forest = positions(forest.texts)
    position = positions(texts)
    in_split = [position.get(passes) for passes in forest.lists]
    with ModelRuntime(DEFAULT_MODEL) as runtime:
        position = {list_index(token): in_forest[passes]
                    for token, passes in runtime.lists.items()}
        both = [(forest.neighbour_savings(summary), model_savings(runtime, summary, position))
                for summary in summaries]
    print(f"| {len(held)} {args.split} TUs, % below clang -Oz | "
          + " | ".join(f"k = {k}" for k in KS) + " |")
    print("|---|" + "---:|" * len(KS))
    for share in (float(text) for text in args.shares.split(",")):
        orders = {k: [[in_split[j] for j in weighted_greedy(
            mixed(ours, theirs, share), len(forest.texts), k, 0.0, forest.never)]
            for ours, theirs in both] for k in KS}
        print(f"| the llama's share {share:g} | "
              + " | ".join(f"{score(held, orders[k], k)[0]:.2f}%" for k in KS) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

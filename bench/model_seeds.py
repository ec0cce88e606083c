"""How much a retrain alone moves the model's figures, and what averaging retrains gains.

    .venv/bin/python bench/model_seeds.py [--seeds 1,2,3] [--split validation] [--work DIR]

Trains one model per seed as `llmcc-ctl train --seed N` trains it (kept in DIR as seedN.gguf
and reused by a later run: each takes ~7 minutes on 2 cores), then scores on a held-out split
of the dataset, as `llmcc-ctl eval` scores, at every k: the popular lists, the shipped model,
each retrain, the spread of those models (largest minus smallest), and their ensemble (the
mean of their log-probabilities over the answer tokens, renormalised, chosen from as
llmcc.advisor.model_runtime.answers chooses). Every model is scored from the log-probabilities
of all its answer tokens, where a compile (and `llmcc-ctl eval`) reads the likeliest
`top_count` tokens: a list that falls outside them has a negligible weight, but the figures can
differ from `llmcc-ctl eval`'s by 0.01. A gap between two models smaller than the spread
is no evidence that one is better.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from llmcc.advisor.model import DEFAULT_MODEL
from llmcc.advisor.model_runtime import (
    NONE,
    ModelRuntime,
    answer_tables,
    answers,
    list_token,
    prompt_text,
)
from llmcc.passes import parse
from llmcc.summary import to_prompt
from llmcc.train import labelled
from llmcc.train.evaluate import KS, score, usable
from llmcc.train.headroom import as_pool_rows
from llmcc.train.measure import greedy


def answer_logprobs(path: str, prompts: list[str], candidates: int) -> np.ndarray:
    """TUs x (each candidate's list token, then NONE): the model's log-probabilities."""
    with ModelRuntime(path, threads=os.cpu_count() or 1) as runtime:
        ids = [runtime.pieces.index(list_token(i)) for i in range(candidates)]
        ids.append(runtime.pieces.index(NONE))
        return np.array([runtime.logprobs(prompt_text(p))[ids] for p in prompts])


def savings(logprobs: np.ndarray, held: list[dict], texts: list[str],
            path: str) -> list[float]:
    """% below -Oz at each k of KS when every TU tries the lists `answers` chooses from these
    log-probabilities, with the lists and coverage table of the model in `path` (the same
    for every model trained on the same rows)."""
    lists, coverage, _ = answer_tables(path)
    position = {parse(text): i for i, text in enumerate(texts)}
    tokens = [list_token(i) for i in range(len(texts))] + [NONE]
    result = []
    for k in KS:
        orders = [[position.get(passes) for passes in answers(zip(tokens, row), k, lists,
                                                                coverage)]
                  for row in logprobs.tolist()]
        result.append(score(held, orders, k)[0])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3", help="seeds to retrain with")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-seeds"),
                        help="where the retrained models are kept")
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    models = {"shipped model": DEFAULT_MODEL}
    for seed in map(int, args.seeds.split(",")):
        path = os.path.join(args.work, f"seed{seed}.gguf")
        if not os.path.exists(path):
            from llmcc.train import fit

            fit.main(["--dataset", args.dataset, "--seed", str(seed), "--out", path])
        models[f"retrained, seed {seed}"] = path

    registry = labelled.read_lists(args.dataset)
    indices = registry["broadcast"]
    texts = [registry["lists"][i] for i in indices]
    rows = usable(labelled.read_all(args.dataset))
    held_rows = [r for r in rows if r["split"] == args.split]
    if not held_rows:
        parser.error(f"no labelled {args.split} TUs in {args.dataset}")
    held = as_pool_rows(held_rows, indices, False)
    train = as_pool_rows([r for r in rows if r["split"] == "train"], indices, False)
    prompts = [to_prompt(r["summary"]) for r in held_rows]

    popular = greedy(train, len(indices), max(KS))
    table = {"popular": [score(held, [popular] * len(held), k)[0] for k in KS]}
    logprobs = {name: answer_logprobs(path, prompts, len(texts))
                for name, path in models.items()}
    for name, values in logprobs.items():
        table[name] = savings(values, held, texts, models[name])
    singles = [table[name] for name in models]
    table["spread of these models"] = [max(v) - min(v) for v in zip(*singles)]
    mean = sum(logprobs.values()) / len(logprobs)
    mean -= np.log(np.exp(mean).sum(axis=1, keepdims=True))
    table[f"ensemble of the {len(models)}"] = savings(mean, held, texts, DEFAULT_MODEL)

    print(f"| {len(held)} {args.split} TUs, % below clang -Oz (geomean) | "
          + " | ".join(f"k = {k}" for k in KS) + " |")
    print("|---|" + "---:|" * len(KS))
    for name, values in table.items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

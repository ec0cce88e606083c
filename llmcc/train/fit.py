"""Training the model: TU prompts and measured candidate sizes in, a seeded llama and its GGUF out.

    llmcc-ctl train [--out FILE] [--add DIR]     # or python -m llmcc.train.fit: the same

The candidates are the dataset's broadcast set (LLVM's -Oz pipeline and the most frequent train
winners), measured on every labelled TU; each becomes one answer token (llmcc.train.tokenizer).
A TU teaches a distribution over them: candidate i gets weight exp(-(size_i / best - 1) / T),
so lists within a fraction T of the TU's best share its weight and a list refused by the symbol
rule, or one llmcc never runs, gets none. With `--teacher forest` the sizes are those a forest
of trees expects of the TU, having learnt from other packages (llmcc.train.forest): what TUs
like this one save rather than one TU's own measurements. A TU where no candidate beats clang's
-Oz teaches the answer NONE: a compile the model expects nothing from need try no list
(llmcc.advisor.model_runtime.answers).
The loss is the cross-entropy of that distribution against the model's next-token distribution
after the prompt, over the whole vocabulary, so a server's top log-probabilities hold answer
tokens first.
The same rows give the coverage table shipped with the model (`coverage_table`): what each list
saved on the TUs that teach each list, by which a compile chooses k lists that complement each
other (llmcc.advisor.model_runtime.answers).

With `--members N`, N models are trained on the same examples with seeds --seed, --seed + 1,
...: an ensemble, whose head (--out) names the others by file and digest, and whose answer at
compile time is the mean of their log-probabilities (llmcc.advisor.model_runtime). A retrain
alone moves a single model's figures by more than many a change of method (bench/model_seeds.py);
averaging seeds is the cheapest remedy.

Everything that decides the result is visible here and recorded in the GGUF file (Config, hash of
the examples, this command line); with the same examples and seed, the same weights come out on
the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F

from llmcc.advisor.model_runtime import COVERAGE_SCALE
from llmcc.passes import PassList, parse
from llmcc.summary import to_prompt
from llmcc.train.model import Config, Llama
from llmcc.train.tokenizer import PassTokenizer

# (llmcc.summary.to_prompt text, weight per candidate and, last, NONE's)
Example = tuple[str, tuple[float, ...]]
TEMPERATURE = 0.02  # softer targets ranked better than 0.005 in a small pilot (300 TUs)
NONE_WEIGHT = 1.0   # of a TU teaching NONE, against one teaching lists (bench/model_choice.py)
# Passes over the examples. Train packages held out (bench/model_choice.py, 2 folds of 933 TUs):
# models trained 5 to 13 passes were about even with the popular lists, 30 to 80 passes worse
# at every k (overfitted: a few hundred examples per fold).
EPOCHS = 8.0


def dataset_sha256(candidates: Sequence[PassList], examples: Iterable[Example],
                   coverage: list[list[int]] | None = None) -> str:
    """Names exactly what a model was trained on, order included, and the coverage it ships."""
    digest = hashlib.sha256(json.dumps([[list(c) for c in candidates], coverage]).encode()
                            + b"\n")
    for prompt, weights in examples:
        digest.update(json.dumps([prompt, weights]).encode() + b"\n")
    return digest.hexdigest()


def candidate_weights(sizes: Sequence[int | None], baseline: int,
                      temperature: float) -> tuple[float, ...] | None:
    """The distribution a TU teaches over the candidates and, last, NONE; None for an empty
    object, which teaches nothing."""
    if baseline <= 0:
        return None
    measured = [size for size in sizes if size is not None]
    if not measured or min(measured) >= baseline:
        return (0.0,) * len(sizes) + (1.0,)
    best = min(measured)
    weights = [0.0 if size is None else math.exp(-(size / best - 1) / temperature)
               for size in sizes]
    total = sum(weights)
    return (*(round(w / total, 6) for w in weights), 0.0)


def candidates_of(registry: dict) -> list[PassList]:
    """The broadcast set of a dataset's list registry (llmcc.train.labelled.read_lists)."""
    return [parse(registry["lists"][i]) for i in registry["broadcast"]]


def _teaching(rows: Iterable[dict], registry: dict, split: str,
              temperature: float) -> Iterator[tuple[dict, list[int | None], tuple[float, ...]]]:
    """(row, broadcast sizes, weights) of each labelled TU of `split` with a summary, a
    broadcast and an object to shrink. A list llmcc never runs (llmcc.passes.NEVER_RUN) counts
    as refused, as `llmcc-ctl eval` counts it: no TU teaches what no compile may try."""
    from llmcc.train.evaluate import never_run_positions

    never = set(never_run_positions([registry["lists"][i] for i in registry["broadcast"]]))
    for row in rows:
        if row.get("split") != split or "summary" not in row or "broadcast" not in row:
            continue
        sizes = [None if j in never else row["broadcast"].get(str(i))
                 for j, i in enumerate(registry["broadcast"])]
        weights = candidate_weights(sizes, row["baseline"], temperature)
        if weights is not None:
            yield row, sizes, weights


def forest_sizes(rows: Iterable[dict], registry: dict, split: str = "train",
                 seed: int = 0) -> dict[str, list[float | None]]:
    """The broadcast sizes of each TU of `split` that `_teaching` yields, as a forest expects
    them that learnt from the other packages (llmcc.train.forest.out_of_fold); refused lists
    stay refused."""
    from llmcc.train import forest

    teaching = [(row, sizes) for row, sizes, _ in _teaching(rows, registry, split, TEMPERATURE)]
    ratios = forest.log_ratios([row["baseline"] for row, _ in teaching],
                               [sizes for _, sizes in teaching])
    expected = forest.out_of_fold([row["summary"] for row, _ in teaching],
                                  [row.get("package", "") for row, _ in teaching], ratios, seed)
    return {row["tu"]: [None if size is None else row["baseline"] * math.exp(e)
                        for size, e in zip(sizes, expectation, strict=True)]
            for (row, sizes), expectation in zip(teaching, expected.tolist(), strict=True)}


def examples_from_rows(rows: Iterable[dict], registry: dict, split: str = "train",
                       temperature: float = TEMPERATURE, none_weight: float = NONE_WEIGHT,
                       taught_sizes: dict[str, list[float | None]] | None = None
                       ) -> list[Example]:
    """One example per labelled TU of `split` with a summary, a broadcast and an object; one
    that teaches NONE counts `none_weight` times as much as another (0: left out). With
    `taught_sizes` (`forest_sizes`), a TU teaches those sizes instead of its measured ones."""
    examples = []
    for row, _, weights in _teaching(rows, registry, split, temperature):
        if taught_sizes is not None:
            weights = candidate_weights(taught_sizes[row["tu"]], row["baseline"], temperature)
        if weights[-1]:  # NONE
            if not none_weight:
                continue
            weights = (*weights[:-1], none_weight)
        examples.append((to_prompt(row["summary"]), weights))
    return examples


def coverage_table(rows: Iterable[dict], registry: dict, split: str = "train",
                   temperature: float = TEMPERATURE) -> list[list[int]]:
    """KEY_COVERAGE for the examples of the same rows: entry [j][i] is the mean saving of list
    i (log of -Oz's size over the list's, 0 where it is not smaller or refused) over the TUs
    that teach list j, each as much as it teaches j, in units of 1/COVERAGE_SCALE."""
    saved = [[0.0] * len(registry["broadcast"]) for _ in registry["broadcast"]]
    mass = [0.0] * len(registry["broadcast"])
    for row, sizes, weights in _teaching(rows, registry, split, temperature):
        savings = [0.0 if size is None or size >= row["baseline"]
                   else math.log(row["baseline"] / size) for size in sizes]
        for j, weight in enumerate(weights[:-1]):  # NONE's TUs save nothing: no row
            if weight:
                mass[j] += weight
                saved[j] = [total + weight * saving for total, saving in zip(saved[j], savings)]
    return [[round(COVERAGE_SCALE * total / mass[j]) if mass[j] else 0 for total in saved[j]]
            for j in range(len(mass))]


def batch(tokenizer: PassTokenizer, examples: Sequence[Example],
          context: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids right-padded with END, each row's answer position, candidate weights).
    Causal attention never looks right, so padding changes nothing before it."""
    rows = [tokenizer.prompt_ids(prompt) for prompt, _ in examples]
    length = max(map(len, rows))
    if length >= context:
        raise ValueError(f"a prompt of {length} tokens does not fit the context of {context}")
    inputs = torch.full((len(rows), length), tokenizer.end)
    for i, ids in enumerate(rows):
        inputs[i, :len(ids)] = torch.tensor(ids)
    positions = torch.tensor([len(ids) - 1 for ids in rows])
    weights = torch.tensor([weights for _, weights in examples])
    return inputs, positions, weights


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first tenth (at most 100 steps), cosine decay to peak/10."""
    warmup = min(100, max(steps // 10, 1))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: Llama, tokenizer: PassTokenizer, examples: Sequence[Example], *, steps: int,
          batch_size: int = 16, lr: float = 3e-3,
          log: Callable[[int, float], None] | None = None) -> list[float]:
    """AdamW on the answer position; batches drawn with the model's seed. Returns the losses."""
    rng = random.Random(model.config.seed)
    # Weight decay on matrices only, as in nanoGPT: decaying norm gains towards 0 only hurts.
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1},
                                   {"params": vectors, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95))
    answers = torch.tensor([*range(tokenizer.first_list,
                                   tokenizer.first_list + len(tokenizer.candidates)),
                            tokenizer.none])  # in the order of candidate_weights
    model.train()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr)
        inputs, positions, weights = batch(
            tokenizer, rng.sample(examples, min(batch_size, len(examples))),
            model.config.context)
        hidden = model.hidden(inputs)[torch.arange(len(positions)), positions]
        logprobs = F.log_softmax(model.logits(hidden), dim=-1)
        loss = -(weights * logprobs[:, answers]).sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log:
            log(step, losses[-1])
    model.eval()
    return losses


def main(argv: list[str] | None = None, prog: str = "python -m llmcc.train.fit") -> int:
    """Train and export; `prog` and `argv` are recorded in the file as its train command."""
    from llmcc.advisor.model import DEFAULT_MODEL, file_digest
    from llmcc.train import labelled
    from llmcc.train.export import QUANTIZATIONS, export

    argv = sys.argv[1:] if argv is None else argv
    defaults = Config()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_MODEL,
                        help="GGUF file to write (default: the model llmcc ships)")
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    parser.add_argument("--split", default="train")
    parser.add_argument("--add", action="append", default=[], metavar="DIR",
                        help="also train on a directory of records labelled by llmcc-ctl label")
    for field in ("vocab_size", "context", "dim", "layers", "heads", "kv_heads", "hidden",
                  "seed"):
        parser.add_argument("--" + field.replace("_", "-"), type=int,
                            default=getattr(defaults, field))
    parser.add_argument("--members", type=int, default=1,
                        help="models in an ensemble, seeds --seed, --seed + 1, ...: the "
                        "others are written beside --out (OUT-1.gguf, ...), which names "
                        "them; a compile averages their log-probabilities")
    parser.add_argument("--epochs", type=float, default=EPOCHS,
                        help="passes over the examples (default %(default)s)")
    parser.add_argument("--steps", type=int,
                        help="batches to train on (default: as many as --epochs makes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=TEMPERATURE,
                        help="relative size difference that divides a candidate's weight by e")
    parser.add_argument("--none-weight", type=float, default=NONE_WEIGHT,
                        help="weight of a TU no list improves, which teaches the answer NONE "
                        "(0: such TUs are left out)")
    parser.add_argument("--teacher", choices=("sizes", "forest"), default="sizes",
                        help="what a TU teaches: its measured sizes, or those a forest of trees "
                        "expects of it, learnt from the other packages (default %(default)s)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--quantization", choices=sorted(QUANTIZATIONS), default="Q8_0")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    if args.members < 1:
        parser.error("--members: at least 1")
    torch.set_num_threads(args.threads)

    registry = labelled.read_lists(args.dataset)
    candidates = candidates_of(registry)
    try:  # and a user's TUs, labelled by `llmcc-ctl label DIR`
        rows = labelled.read_with_added(args.dataset, registry, args.add)
    except labelled.NotComparable as err:
        parser.error(str(err))
    taught = forest_sizes(rows, registry, args.split, args.seed) \
        if args.teacher == "forest" else None
    examples = examples_from_rows(rows, registry, args.split, args.temperature,
                                  args.none_weight, taught)
    coverage = coverage_table(rows, registry, args.split, args.temperature)
    if not examples:
        parser.error(f"no {args.split} rows in {args.dataset} with a summary, a broadcast and "
                     "a non-empty object")
    tokenizer = PassTokenizer.train((prompt for prompt, _ in examples), args.vocab_size,
                                    candidates)
    steps = args.steps or max(1, round(args.epochs * len(examples) / args.batch_size))
    trained_on = dataset_sha256(candidates, examples, coverage)
    command = shlex.join([*prog.split(), *argv])
    members: list[tuple[str, str]] = []
    for member in range(args.members):  # the others first: the head names their digests
        config = Config(vocab_size=tokenizer.vocab_size, context=args.context, dim=args.dim,
                        layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
                        hidden=args.hidden, seed=args.seed + (member + 1) % args.members)
        model = Llama(config)
        label = f"member {member + 1} of {args.members}, " if args.members > 1 else ""
        print(f"{label}{len(examples)} examples, {steps} steps, {len(candidates)} candidate "
              f"lists, {model.parameter_count() / 1e6:.2f}M parameters, seed {config.seed}",
              file=sys.stderr)

        def log(step: int, loss: float) -> None:
            if step % 50 == 0 or step == steps - 1:
                print(f"step {step} loss {loss:.4f}", file=sys.stderr)

        train(model, tokenizer, examples, steps=steps, batch_size=args.batch_size, lr=args.lr,
              log=log)
        head = member == args.members - 1
        path = args.out if head else member_path(args.out, config.seed - args.seed)
        export(model, tokenizer, path, dataset_sha256=trained_on, command=command,
               quantization=args.quantization, coverage=coverage,
               members=members if head else None)
        if not head:
            members.append((os.path.basename(path), file_digest(path, None)))
        print(f"wrote {path}", file=sys.stderr)
    return 0


def member_path(head: str, number: int) -> str:
    """Where the head of an ensemble in `head` keeps its member `number` (1, 2, ...)."""
    stem, extension = os.path.splitext(head)
    return f"{stem}-{number}{extension or '.gguf'}"


if __name__ == "__main__":
    sys.exit(main())

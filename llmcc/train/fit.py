"""Training the model: (prompt, pass list) examples in, a seeded llama and its GGUF file out.

    python -m llmcc.train.fit --out llmcc.gguf            # the labelled dataset's train split

Only answers are learned: the loss covers each example's pass tokens and END, not its prompt,
because the advisor only ever asks how likely a list is for a TU. Everything that decides the
result is visible here and recorded in the GGUF file (Config, hash of the examples, this
command line); with the same examples and seed, the same weights come out on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from llmcc.passes import OZ_PIPELINE, PassList, parse, to_text
from llmcc.summary import to_prompt
from llmcc.train.model import Config, Llama
from llmcc.train.tokenizer import PassTokenizer

Example = tuple[str, PassList]  # (llmcc.summary.to_prompt text, the pass list to answer)
IGNORE = -1                     # target of prompt and padding positions: nothing to predict


def dataset_sha256(examples: Iterable[Example]) -> str:
    """Names exactly what a model was trained on, order included."""
    digest = hashlib.sha256()
    for prompt, passes in examples:
        digest.update(json.dumps([prompt, to_text(passes)]).encode() + b"\n")
    return digest.hexdigest()


def examples_from_rows(rows: Iterable[dict], split: str = "train") -> list[Example]:
    """One example per labelled TU with a summary: its search winner where the search beat
    clang's -Oz, else -Oz itself (the simplest label; every broadcast list's size is in the row
    for a richer one)."""
    examples = []
    for row in rows:
        if row.get("split") != split or "summary" not in row:
            continue
        search = row.get("search") or {}
        better = search.get("passes") and search.get("size", math.inf) < row["baseline"]
        examples.append((to_prompt(row["summary"]),
                         parse(search["passes"]) if better else OZ_PIPELINE))
    return examples


def batch(tokenizer: PassTokenizer, examples: Sequence[Example],
          context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, targets), right-padded with END: causal attention never looks right, so
    padding changes nothing before it, and its targets are ignored."""
    rows = [tokenizer.example(prompt, passes) for prompt, passes in examples]
    length = max(len(ids) for ids, _ in rows) - 1
    if length > context:
        raise ValueError(f"an example of {length + 1} tokens exceeds the context of {context}")
    inputs = torch.full((len(rows), length), tokenizer.end)
    targets = torch.full((len(rows), length), IGNORE)
    for i, (ids, prompt_length) in enumerate(rows):
        inputs[i, :len(ids) - 1] = torch.tensor(ids[:-1])
        targets[i, prompt_length - 1:len(ids) - 1] = torch.tensor(ids[prompt_length:])
    return inputs, targets


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first tenth (at most 100 steps), cosine decay to peak/10."""
    warmup = min(100, max(steps // 10, 1))
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model: Llama, tokenizer: PassTokenizer, examples: Sequence[Example], *, steps: int,
          batch_size: int = 8, lr: float = 3e-3,
          log: Callable[[int, float], None] | None = None) -> list[float]:
    """AdamW on the answer tokens; batches drawn with the model's seed. Returns the losses."""
    rng = random.Random(model.config.seed)
    # Weight decay on matrices only, as in nanoGPT: decaying norm gains towards 0 only hurts.
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1},
                                   {"params": vectors, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.95))
    model.train()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr)
        inputs, targets = batch(tokenizer, rng.sample(examples, min(batch_size, len(examples))),
                                model.config.context)
        answer = targets != IGNORE
        logits = model.logits(model.hidden(inputs)[answer])
        loss = F.cross_entropy(logits, targets[answer])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if log:
            log(step, losses[-1])
    model.eval()
    return losses


def main(argv: list[str] | None = None) -> int:
    from llmcc.train import labelled
    from llmcc.train.export import QUANTIZATIONS, export

    argv = sys.argv[1:] if argv is None else argv
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m llmcc.train.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="GGUF file to write")
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    parser.add_argument("--split", default="train")
    for field in ("vocab_size", "context", "dim", "layers", "heads", "kv_heads", "hidden",
                  "seed"):
        parser.add_argument("--" + field.replace("_", "-"), type=int,
                            default=getattr(defaults, field))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--quantization", choices=sorted(QUANTIZATIONS), default="Q8_0")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    examples = examples_from_rows(labelled.read_all(args.dataset), args.split)
    if not examples:
        parser.error(f"no {args.split} rows with a summary in {args.dataset}")
    tokenizer = PassTokenizer.train((prompt for prompt, _ in examples), args.vocab_size)
    config = Config(vocab_size=tokenizer.vocab_size, context=args.context, dim=args.dim,
                    layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
                    hidden=args.hidden, seed=args.seed)
    model = Llama(config)
    print(f"{len(examples)} examples, {model.parameter_count() / 1e6:.2f}M parameters",
          file=sys.stderr)

    def log(step: int, loss: float) -> None:
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss:.4f}", file=sys.stderr)

    train(model, tokenizer, examples, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
          log=log)
    export(model, tokenizer, args.out, dataset_sha256=dataset_sha256(examples),
           command=shlex.join(["python", "-m", "llmcc.train.fit", *argv]),
           quantization=args.quantization)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

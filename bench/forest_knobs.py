"""The forest's settings tried on a held split: does another leaf size, split width, number of
trees, target, more numbers to split on, or fewer training TUs grow a forest that chooses better
than the shipped settings?

    .venv/bin/python bench/forest_knobs.py [--split validation] [VARIANT ...]
    (needs scikit-learn: pip install .[train])

Each VARIANT (default: all of VARIANTS) is grown on the train split as `llmcc-ctl train
--forest` grows the shipped forest but for what it names, written to a forest file in memory
and read back, then scored on the split at each k of `llmcc-ctl eval` (the geomean % below
clang -Oz, from the measured broadcast sizes; nothing is compiled). A target other than `raw`
only changes what the trees learn, so which TUs share a leaf: the lists are still chosen on
those TUs' measured savings, as a compile chooses them. A variant with more numbers adds them
to each summary's `module` section (every number there is a feature), for the train and the held
TUs alike, as a compile would if it shipped. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from llmcc.advisor.forest import Forest
from llmcc.train import forest as grow
from llmcc.train.evaluate import KS, alike, forest_ranker, held_split, model_orders, score


def relative(ratios: np.ndarray) -> np.ndarray:
    """Each TU's log ratios over its best list's: which lists suit it, not how much it has."""
    best = ratios.min(axis=1, keepdims=True)
    return np.where(best < 0, ratios / np.where(best < 0, -best, 1.0), 0.0)


def near_best(ratios: np.ndarray) -> np.ndarray:
    """1 for each list within 0.1% of the TU's best (where some list shrinks it), else 0."""
    best = ratios.min(axis=1, keepdims=True)
    return ((ratios <= best + 0.001) & (best < 0)).astype(float)


FUNCTION_NUMBERS = ("blocks", "callers", "calls_external", "calls_indirect", "calls_internal",
                    "calls_intrinsic", "loops", "loop_depth", "params", "stack_bytes",
                    "dynamic_allocas")


def kept_functions(summary: dict, baseline: int) -> dict[str, float]:
    """What the summary's largest functions (its `functions`) hold beyond their instruction
    counts: sums and maxima of their numbers, their linkages, attributes and flags, and how many
    look alike (same size and opcodes: what mergefunc may merge)."""
    functions = summary.get("functions", [])
    out: Counter = Counter({"kept_functions": len(functions)})
    for name in FUNCTION_NUMBERS:
        values = [f.get(name, 0) for f in functions]
        out[f"kept_sum_{name}"], out[f"kept_max_{name}"] = sum(values), max(values, default=0)
    for f in functions:
        out[f"kept_linkage_{f.get('linkage')}"] += 1
        out.update(f"kept_attr_{attr}" for attr in f.get("attrs", []))
        out.update(f"kept_{flag}" for flag in ("vararg", "recursive", "address_taken")
                   if f.get(flag))
    shapes = Counter((f["instructions"], f["blocks"], json.dumps(f["opcodes"], sort_keys=True))
                     for f in functions)
    out["kept_alike"] = sum(n - 1 for n in shapes.values())
    return dict(out)


def shares(summary: dict, baseline: int) -> dict[str, float]:
    """Ratios a tree cannot split on as two counts: instructions per block and per function,
    the largest function's share, each common opcode's share (in thousandths)."""
    module, opcodes = summary.get("module") or {}, summary.get("opcodes") or {}
    instructions = max(1, module.get("instructions", 0))
    largest = max((f["instructions"] for f in summary.get("functions", [])), default=0)
    out = {"share_per_block": 100 * instructions / max(1, module.get("blocks", 0)),
           "share_per_function": instructions / max(1, module.get("functions", 0)),
           "share_local_functions": 1000 * module.get("local_functions", 0)
           / max(1, module.get("functions", 0)),
           "share_largest": 1000 * largest / instructions}
    out.update((f"share_{op}", 1000 * opcodes.get(op, 0) / instructions)
               for op in ("alloca", "load", "store", "call", "br", "getelementptr", "icmp",
                          "phi", "select", "switch"))
    return out


def baseline_size(summary: dict, baseline: int) -> dict[str, float]:
    """clang -Oz's object size (a compile measures it before the advisor runs), and per IR
    instruction: how much -Oz already made of the TU."""
    instructions = max(1, (summary.get("module") or {}).get("instructions", 0))
    return {"baseline_bytes": baseline, "baseline_per_instruction": 1000 * baseline / instructions}


Numbers = Callable[[dict, int], dict[str, float]]  # (summary, -Oz size) -> more numbers


class Variant(NamedTuple):
    """What the trees learn from the log ratios, fewest TUs a leaf, split width, trees, more
    numbers to split on, and whether to grow on one of each set of train TUs alike in summary
    and every measured size (a file built twice, static and shared)."""
    target: Callable[[np.ndarray], np.ndarray] = lambda ratios: ratios
    leaf: int = grow.LEAF
    max_features: float = grow.MAX_FEATURES
    trees: int = grow.TREES
    numbers: tuple[Numbers, ...] = ()
    distinct: bool = False


VARIANTS = {
    "shipped": Variant(),
    "leaf 2": Variant(leaf=2),
    "leaf 10": Variant(leaf=10),
    "leaf 20": Variant(leaf=20),
    "max_features 0.6": Variant(max_features=0.6),
    "500 trees": Variant(trees=500),
    "relative target": Variant(target=relative),
    "near-best target": Variant(target=near_best),
    "sqrt target": Variant(target=lambda ratios: -np.sqrt(-ratios)),
    "largest functions' numbers": Variant(numbers=(kept_functions,)),
    "shares": Variant(numbers=(shares,)),
    "largest functions' numbers and shares": Variant(numbers=(kept_functions, shares)),
    "-Oz object size": Variant(numbers=(baseline_size,)),
    "distinct train TUs": Variant(distinct=True),
}


def with_numbers(summary: dict, baseline: int, numbers: tuple[Numbers, ...]) -> dict:
    """`summary` with each of `numbers` added to its `module` section."""
    if not numbers:
        return summary
    module = dict(summary.get("module") or {})
    for more in numbers:
        module.update(more(summary, baseline))
    return {**summary, "module": module}


def distinct(train: list[dict], pool: list[dict]) -> list[int]:
    """The first of each set of train TUs `alike` (their rows and pool rows)."""
    first: dict[tuple, int] = {}
    for i, (row, sizes) in enumerate(zip(train, pool, strict=True)):
        first.setdefault(alike(sizes, row["summary"]), i)
    return sorted(first.values())


def variant_forest(train: list[dict], pool: list[dict], texts: list[str],
                   variant: Variant) -> Forest:
    """A forest file grown as `variant` says, read as a compile reads one."""
    rows = distinct(train, pool) if variant.distinct else range(len(train))
    summaries = [with_numbers(train[i]["summary"], pool[i]["baseline"], variant.numbers)
                 for i in rows]
    ratios = grow.log_ratios([pool[i]["baseline"] for i in rows], [pool[i]["sizes"] for i in rows])
    return Forest.from_bytes(grow.shipped(summaries, ratios, texts, trees=variant.trees,
                                          leaf=variant.leaf, max_features=variant.max_features,
                                          learned=variant.target(ratios)))


def table_row(name: str, grown: Forest, shown: list[dict], held: list[dict], texts: list[str],
              started: float) -> str:
    """A table row: what `grown` saves at each k on the `held` TUs choosing from the summaries
    `shown` as a compile does (geomean % below -Oz), and the minutes since `started`."""
    orders = model_orders(shown, texts, forest_ranker(grown))
    return (f"| {name} | " + " | ".join(f"{score(held, orders[k], k)[0]:.2f}%" for k in KS)
            + f" | {(time.time() - started) / 60:.1f} |")


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
    held, summaries, _ = held_split(args.dataset, args.split)
    print(f"| {len(held)} {args.split} TUs, % below clang -Oz | "
          + " | ".join(f"k = {k}" for k in KS) + " | minutes |")
    print("|---|" + "---:|" * (len(KS) + 1))
    for name in args.variants or VARIANTS:
        started = time.time()
        variant = VARIANTS[name]
        grown = variant_forest(train, pool, texts, variant)
        seen = [with_numbers(summary, row["baseline"], variant.numbers)
                for summary, row in zip(summaries, held, strict=True)]
        print(table_row(name, grown, seen, held, texts, started), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

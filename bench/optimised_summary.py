"""Does the TU's IR after clang's own pipeline tell the forest more than the IR before it? A
compile could summarise both (the baseline runs that pipeline anyway); this grows forests on
each and scores them on a held split, as bench/forest_knobs.py does.

    .venv/bin/python -m llmcc.train.corpus --work W PACKAGE ...   # record TUs again
    .venv/bin/python bench/optimised_summary.py W/records [--split validation]
    (needs scikit-learn: pip install .[train])

For each recorded TU: its summary (llmcc.summary) as the dataset holds it, and the summary of
the IR clang's pipeline makes of it at the TU's level with its code generation flags (`clang -S
-emit-llvm -x ir`, without debug info), kept in W/records/optimised.jsonl (resumable). Dataset
rows are matched to records by their summary (a record's file name also hashes its debug
information, which holds the directory it was built in). Train and held TUs without a record
are left out of every variant alike: the forest `shipped` (the summary), `+ optimised` (every
number of the optimised summary added) and `optimised alone` (that summary instead).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time

from forest_knobs import Variant, table_row, variant_forest, with_numbers

from llmcc.advisor.forest import features
from llmcc.invocation import QUIET_ABOUT_FLAGS
from llmcc.summary import summarize_bitcode, summarize_ir
from llmcc.toolchain import Tools, check_tools, default_clang, find_llvm_dis, run
from llmcc.train import forest as grow
from llmcc.train.evaluate import KS, held_split

TIMEOUT = 300.0


def key(summary: dict) -> str:
    return hashlib.sha1(json.dumps(summary, sort_keys=True).encode()).hexdigest()


def optimised(tools: Tools, bitcode: str) -> tuple[str, dict] | None:
    """(key of the TU's summary, the summary of its IR after clang's pipeline), or None where
    clang fails on it."""
    with open(bitcode[:-3] + ".json") as handle:
        codegen = json.load(handle)["codegen"]
    code, out, _ = run([tools.clang, *codegen, *QUIET_ABOUT_FLAGS, "-g0", "-S", "-emit-llvm",
                        "-x", "ir", bitcode, "-o", "-"], TIMEOUT)
    if code != 0:
        return None
    before = summarize_bitcode(bitcode, find_llvm_dis(tools.opt, tools.clang), TIMEOUT)
    return key(before), summarize_ir(out.decode())


def summaries(records: str) -> dict[str, dict]:
    """Summary key -> optimised summary of every TU under `records`, computed once."""
    path = os.path.join(records, "optimised.jsonl")
    tools = check_tools(default_clang("", os.environ.get("PATH", ""), frozenset()), "")
    done: dict[str, dict] = {}
    if os.path.exists(path):
        with open(path) as handle:
            done = {row["bitcode"]: row for row in map(json.loads, handle)}
    with open(path, "a") as handle:
        for bitcode in sorted(glob.glob(os.path.join(records, "*", "*.bc"))):
            name = os.path.relpath(bitcode, records)
            if name not in done:
                found = optimised(tools, bitcode)
                done[name] = {"bitcode": name, "key": found and found[0],
                              "optimised": found and found[1]}
                handle.write(json.dumps(done[name]) + "\n")
                handle.flush()
    return {row["key"]: row["optimised"] for row in done.values() if row["key"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", help="the records directory of llmcc.train.corpus")
    parser.add_argument("--split", default="validation", choices=("test", "validation"))
    parser.add_argument("--dataset", default="data/dataset")
    args = parser.parse_args()
    after = summaries(args.records)
    train, pool, texts = grow.training_set(args.dataset)
    kept = [i for i, row in enumerate(train) if key(row["summary"]) in after]
    train, pool = [train[i] for i in kept], [pool[i] for i in kept]
    held, seen, _ = held_split(args.dataset, args.split)
    kept = [i for i, summary in enumerate(seen) if key(summary) in after]
    held, seen = [held[i] for i in kept], [seen[i] for i in kept]
    if not train or not held:
        parser.error(f"no train or {args.split} TU of the dataset is among the records")

    def added(summary: dict, baseline: int) -> dict[str, float]:
        return {f"optimised_{name}": value for name, value in features(after[key(summary)]).items()}

    print(f"| {len(held)} {args.split} TUs; grown on {len(train)} train TUs | "
          + " | ".join(f"k = {k}" for k in KS) + " | minutes |")
    print("|---|" + "---:|" * (len(KS) + 1))
    for name, numbers, alone in (("shipped", (), False), ("+ optimised", (added,), False),
                                 ("optimised alone", (), True)):
        started = time.time()
        rows = [{**row, "summary": after[key(row["summary"])]} for row in train] if alone else train
        grown = variant_forest(rows, pool, texts, Variant(numbers=numbers))
        shown = [after[key(summary)] if alone else with_numbers(summary, row["baseline"], numbers)
                 for summary, row in zip(seen, held, strict=True)]
        print(table_row(name, grown, shown, held, texts, started), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

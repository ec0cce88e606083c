"""Could a cold compile generate code for fewer lists? Only if something cheaper than code
generation tells which optimised module gives the smallest object. This scores the estimates
opt gives for free against the real sizes.

    LLMCC_RECORD=DIR LLMCC_CANDIDATES=0 make ...     # record a project's TUs
    .venv/bin/python bench/size_proxy.py DIR [--lists 10] [--jobs N] [--out rows.jsonl]

For every recorded TU and each of the first --lists popular lists: opt with the list (as a
compile runs it, with `print<func-properties>` after it, which changes nothing in the module),
whose output gives three estimates (the optimised bitcode's bytes, its instructions and its basic
blocks, summed over functions), then code generation and the object's text+data as a compile
measures it (llmcc.optimize.Evaluator, symbol rule included). Printed: for k = 2, 3, 5, 10, what
a compile saves (geomean below clang -Oz) when it generates code for all k lists, and when it
generates code only for the m lists each estimate ranks smallest (m = 1, 2).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import sys
import tempfile

from llmcc.advisor.popular import PopularAdvisor
from llmcc.optimize import opt_command
from llmcc.passes import parse, to_text
from llmcc.toolchain import run
from llmcc.train.measure import read_rows, recorded_evaluator, run_resumable

TIMEOUT = 300.0
ESTIMATES = ("bitcode bytes", "instructions", "basic blocks")
KS = (2, 3, 5, 10)


def measure(job: tuple[list[str], str]) -> dict:
    """One TU: the baseline's size, and per list [bytes, instructions, blocks, size] (size None
    where refused or where a tool failed)."""
    texts, bitcode = job
    with tempfile.TemporaryDirectory(prefix="llmcc-size-proxy-") as work:
        evaluator = recorded_evaluator(bitcode, work, TIMEOUT)
        row = {"tu": os.path.basename(bitcode), "baseline_size": evaluator.baseline().size,
               "lists": []}
        optimised = os.path.join(work, "optimised.bc")
        for text in texts:
            passes = parse(text)
            cmd = opt_command(evaluator.tools, evaluator.pic, passes, bitcode, optimised)
            at = next(i for i, arg in enumerate(cmd) if arg.startswith("-passes="))
            cmd[at] += ",print<func-properties>"
            code, _, err = run(cmd, TIMEOUT)
            if code != 0:
                row["lists"].append(None)
                continue
            printed = err.decode(errors="replace")
            counts = [sum(map(int, re.findall(rf"{name}: (\d+)", printed)))
                      for name in ("TotalInstructionCount", "BasicBlockCount")]
            size = evaluator.candidate(passes).size
            row["lists"].append([os.path.getsize(optimised), *counts, size])
    return row


def saving(rows: list[dict], pick) -> float:
    """Geomean % below the baseline when each TU keeps the smallest object among `pick(lists)`
    (its measured entries), never one larger than the baseline."""
    logs = []
    for row in rows:
        base = row["baseline_size"]
        sizes = [entry[3] for entry in pick(row["lists"]) if entry and entry[3] is not None]
        logs.append(math.log(min([base, *sizes]) / base))
    return 100 * (1 - math.exp(sum(logs) / len(logs)))


def table(rows: list[dict]) -> str:
    def line(name: str, pick) -> str:
        return f"| {name} | " + " | ".join(
            f"{saving(rows, lambda lists, k=k: pick(lists, k)):.2f}%" for k in KS) + " |"

    lines = ["| % below clang -Oz (geomean) | " + " | ".join(f"k = {k}" for k in KS) + " |",
             "|---|" + "---:|" * len(KS), line("code for all k lists", lambda lists, k: lists[:k])]
    for at, name in enumerate(ESTIMATES):
        for m in (1, 2):
            def pick(lists, k, m=m, at=at):
                measured = [entry for entry in lists[:k] if entry]
                return sorted(measured, key=lambda entry: entry[at])[:m]
            lines.append(line(f"code for the {m} smallest by {name}", pick))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", help="a directory LLMCC_RECORD wrote")
    parser.add_argument("--lists", type=int, default=max(KS), help="popular lists, in order")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="size_proxy.jsonl")
    args = parser.parse_args()
    texts = [to_text(passes) for passes in PopularAdvisor.load().lists[:args.lists]]
    bitcodes = sorted(glob.glob(os.path.join(args.records, "*.bc")))
    if not bitcodes:
        parser.error(f"no recorded TUs in {args.records}")
    done = run_resumable(args.out, [(texts, path) for path in bitcodes], measure, args.jobs)
    rows = [done[os.path.basename(path)] for path in bitcodes if os.path.basename(path) in done]
    rows = [row for row in rows if row["baseline_size"] > 0]
    print(f"{len(rows)} TUs, the first {len(texts)} popular lists, rows in {args.out} "
          f"({len(read_rows(args.out))} in all)\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Could a cold compile generate code for fewer lists? Only if something cheaper than code
generation tells which optimised module gives the smallest object. This scores the estimates
opt gives for free, and the object of a fast code generation (-O0), against the real sizes.

    LLMCC_RECORD=DIR LLMCC_CANDIDATES=0 make ...     # record a project's TUs
    .venv/bin/python bench/size_proxy.py DIR [--lists 10] [--jobs N] [--out rows.jsonl]

For every recorded TU and each of the first --lists popular lists: opt with the list (as a
compile runs it, with `print<func-properties>` after it, which changes nothing in the module),
whose output gives three estimates (the optimised bitcode's bytes, its instructions and its basic
blocks, summed over functions) and, generated at -O0 (clang's fast instruction selection and
register allocation, the user's other flags kept), a fourth: that object's text+data; then code
generation and the object's text+data as a compile measures it (llmcc.optimize.Evaluator, symbol
rule included). Printed: for k = 2, 3, 5, 10, what a compile saves (geomean below clang -Oz)
when it generates code for all k lists, and when it generates code only for the m lists each
estimate ranks smallest (m = 1, 2); and what the -O0 object costs, as a share of the list's
opt run and code generation (median over lists and TUs).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import statistics
import sys
import tempfile
import time

from llmcc.advisor.popular import PopularAdvisor
from llmcc.invocation import codegen_args
from llmcc.objfile import read_object
from llmcc.optimize import opt_command
from llmcc.passes import parse, to_text
from llmcc.toolchain import run
from llmcc.train.measure import read_rows, recorded_evaluator, run_resumable

TIMEOUT = 300.0
# name, position in a list's entry: [bytes, instructions, blocks, size, -O0 object's size,
# seconds of the -O0 code generation, seconds of the list's opt run and code generation]
ESTIMATES = (("bitcode bytes", 0), ("instructions", 1), ("basic blocks", 2),
             ("-O0 object bytes", 4))
KS = (2, 3, 5, 10)


def measure(job: tuple[list[str], str]) -> dict:
    """One TU: the baseline's size, and per list its entry (ESTIMATES; size None where refused
    or where a tool failed)."""
    texts, bitcode = job
    with tempfile.TemporaryDirectory(prefix="llmcc-size-proxy-") as work:
        evaluator = recorded_evaluator(bitcode, work, TIMEOUT)
        row = {"tu": os.path.basename(bitcode), "baseline_size": evaluator.baseline().size,
               "lists": []}
        optimised, fast = os.path.join(work, "optimised.bc"), os.path.join(work, "fast.o")
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
            started = time.perf_counter()
            code, _, err = run([evaluator.tools.clang, *codegen_args(
                (*evaluator.codegen, "-O0"), optimised, fast, run_pipeline=False)], TIMEOUT)
            fast_seconds = time.perf_counter() - started
            if code != 0:
                row["lists"].append(None)
                continue
            with open(fast, "rb") as handle:
                fast_size = read_object(handle.read()).size
            started = time.perf_counter()
            size = evaluator.candidate(passes).size
            row["lists"].append([os.path.getsize(optimised), *counts, size, fast_size,
                                 fast_seconds, time.perf_counter() - started])
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
    for name, at in ESTIMATES:
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
    if any(entry and len(entry) < 7 for row in rows for entry in row["lists"]):
        parser.error(f"{args.out} holds rows of an older size_proxy.py: give another --out")
    rows = [row for row in rows if row["baseline_size"] > 0]
    print(f"{len(rows)} TUs, the first {len(texts)} popular lists, rows in {args.out} "
          f"({len(read_rows(args.out))} in all)\n")
    print(table(rows))
    shares = [entry[5] / entry[6] for row in rows for entry in row["lists"]
              if entry and entry[6] > 0]
    if shares:
        print(f"\nthe -O0 object cost {statistics.median(shares):.2f} of the list's opt run and "
              f"code generation (median of {len(shares)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

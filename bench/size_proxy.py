"""Could a cold compile generate code for fewer lists? Only if something cheaper than code
generation tells which optimised module gives the smallest object. This scores the estimates
opt gives for free, a weighting of them learned on other TUs, the object of a fast code
generation (-O0) and the advisor's own order against the real sizes.

    LLMCC_RECORD=DIR LLMCC_CANDIDATES=0 make ...     # record a project's TUs
    .venv/bin/python bench/size_proxy.py DIR [--lists 10] [--forest] [--per-package N]
                                             [--jobs N] [--out rows.jsonl]

For every recorded TU (DIR/*.bc, or a corpus's DIR/PACKAGE/*.bc, --per-package of each
package's own) and each of its lists (the first --lists popular ones, or with --forest the
shipped forest's first --lists for this TU, in its order): opt with the list (as a compile runs
it, with `print<func-properties>` after it, which changes nothing in the module), whose output
gives the optimised bitcode's bytes and LLVM's function properties summed over functions (the
inliner's detailed set: instructions, blocks, loads, stores, calls, operands, edges), and,
generated at -O0 (clang's fast instruction selection and register allocation, the user's other
flags kept), that object's text+data; then code generation and the object's text+data as a
compile measures it (llmcc.optimize.Evaluator, symbol rule included). The learned estimate
weighs the properties by a ridge regression of the size differences between a TU's lists,
fitted on the other packages' TUs (on the other TUs where DIR holds one project). Printed: for
k = 2, 3, 5, 10, what a compile saves (geomean below clang -Oz) when it generates code for all
k lists, and when it generates code only for the m lists each estimate ranks smallest (m = 1,
2); and what the -O0 object costs, as a share of the list's opt run and code generation (median
over lists and TUs).
"""

from __future__ import annotations

import argparse
import functools
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
from llmcc.train.measure import read_rows, recorded_evaluator, run_resumable, sample_tus

TIMEOUT = 300.0
# a list's entry: [bitcode bytes, instructions, blocks, size, -O0 object's size, seconds of the
# -O0 code generation, seconds of the list's opt run and code generation, function properties]
ENTRY_LENGTH = 8
FUNCTION = b"Printing analysis results of CFA for function"
KS = (2, 3, 5, 10)
RIDGE = 1.0  # the regression's penalty, on properties scaled to a mean magnitude of 1


def summed_properties(printed: bytes) -> dict[str, int]:
    """`print<func-properties>`'s numbers summed over the module's functions, and how many."""
    totals = {"Functions": printed.count(FUNCTION)}
    for name, value in re.findall(rb"^(\w+): (\d+)$", printed, re.MULTILINE):
        totals[name.decode()] = totals.get(name.decode(), 0) + int(value)
    return totals


def measure(job: tuple[list[str] | int, str]) -> dict:
    """One TU: the baseline's size, and per list its entry (ENTRY_LENGTH; size None where
    refused or where a tool failed). The lists are the job's, or where it gives a number, the
    forest's first that many for this TU."""
    texts, bitcode = job
    with tempfile.TemporaryDirectory(prefix="llmcc-size-proxy-") as work:
        evaluator = recorded_evaluator(bitcode, work, TIMEOUT)
        row = {"tu": os.path.basename(bitcode), "baseline_size": evaluator.baseline().size,
               "lists": []}
        if isinstance(texts, int):
            texts = _forest_texts(evaluator, bitcode, texts)
        optimised, fast = os.path.join(work, "optimised.bc"), os.path.join(work, "fast.o")
        for text in texts:
            passes = parse(text)
            cmd = opt_command(evaluator.tools, evaluator.pic, passes, bitcode, optimised)
            at = next(i for i, arg in enumerate(cmd) if arg.startswith("-passes="))
            cmd[at] += ",print<func-properties>"
            cmd.insert(1, "-enable-detailed-function-properties")
            code, _, err = run(cmd, TIMEOUT)
            if code != 0:
                row["lists"].append(None)
                continue
            properties = summed_properties(err)
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
            row["lists"].append([os.path.getsize(optimised),
                                 properties.get("TotalInstructionCount", 0),
                                 properties.get("BasicBlockCount", 0), size, fast_size,
                                 fast_seconds, time.perf_counter() - started, properties])
        return row


@functools.cache
def _forest():
    """The shipped forest, read once per worker process."""
    from llmcc.advisor.forest import FOREST_FILE, Forest

    return Forest.load(FOREST_FILE)


def _forest_texts(evaluator, bitcode: str, count: int) -> list[str]:
    """The shipped forest's lists for this TU, in its order (no min_gain: as many as asked)."""
    from llmcc.summary import summarize_ir

    forest = _forest()
    chosen = forest.choose(summarize_ir(evaluator.disassemble(bitcode)), count)
    return [to_text(forest.lists[i]) for i in chosen]


def learned_estimates(rows: list[dict]) -> dict[tuple[str, int], float]:
    """(TU, list position) -> estimated size: function properties weighed by a ridge
    regression of the size differences between each TU's lists (relative to its baseline),
    fitted without the TU's own group (its package, which main sets), or without the TU where
    there is one group."""
    import numpy as np

    names = sorted({name for row in rows for entry in row["lists"] if entry
                    for name in entry[7]} | {"BitcodeBytes"})

    def vector(entry) -> np.ndarray:
        return np.array([entry[0] if name == "BitcodeBytes" else entry[7].get(name, 0)
                         for name in names], float)

    def pairs(row) -> tuple[np.ndarray, np.ndarray]:
        measured = [(vector(entry), entry[3]) for entry in row["lists"]
                    if entry and entry[3] is not None]
        both = [(a, b) for i, a in enumerate(measured) for b in measured[i + 1:]]
        xs = [(a[0] - b[0]) / row["baseline_size"] for a, b in both]
        ys = [(a[1] - b[1]) / row["baseline_size"] for a, b in both]
        return np.array(xs).reshape(-1, len(names)), np.array(ys)

    by_row = [pairs(row) for row in rows]
    groups = {row["group"] for row in rows}
    key = (lambda row: row["group"]) if len(groups) > 1 else (lambda row: row["tu"])
    estimates = {}
    for held in {key(row) for row in rows}:
        x = np.concatenate([p[0] for row, p in zip(rows, by_row) if key(row) != held])
        y = np.concatenate([p[1] for row, p in zip(rows, by_row) if key(row) != held])
        scale = np.abs(x).mean(0) + 1e-12
        scaled = x / scale
        weights = np.linalg.solve(scaled.T @ scaled + RIDGE * np.eye(len(names)),
                                  scaled.T @ y) / scale
        for row in rows:
            if key(row) == held:
                for at, entry in enumerate(row["lists"]):
                    if entry:
                        estimates[(row["tu"], at)] = float(vector(entry) @ weights)
    return estimates


def saving(rows: list[dict], pick) -> float:
    """Geomean % below the baseline when each TU keeps the smallest object among `pick(row)`
    (its measured entries), never one larger than the baseline."""
    logs = []
    for row in rows:
        base = row["baseline_size"]
        sizes = [entry[3] for entry in pick(row) if entry and entry[3] is not None]
        logs.append(math.log(min([base, *sizes]) / base))
    return 100 * (1 - math.exp(sum(logs) / len(logs)))


def table(rows: list[dict]) -> str:
    learned = learned_estimates(rows)
    # name, the key each TU's (position, entry) pairs are ranked by; None: by position, the
    # advisor's first m lists, as a compile at k = m tries them
    estimates = (("bitcode bytes", lambda row, at, entry: entry[0]),
                 ("instructions", lambda row, at, entry: entry[1]),
                 ("basic blocks", lambda row, at, entry: entry[2]),
                 ("learned weights", lambda row, at, entry: learned[(row["tu"], at)]),
                 ("-O0 object bytes", lambda row, at, entry: entry[4]),
                 (None, lambda row, at, entry: at))

    def line(name: str, pick) -> str:
        return f"| {name} | " + " | ".join(
            f"{saving(rows, lambda row, k=k: pick(row, k)):.2f}%" for k in KS) + " |"

    lines = ["| % below clang -Oz (geomean) | " + " | ".join(f"k = {k}" for k in KS) + " |",
             "|---|" + "---:|" * len(KS),
             line("code for all k lists", lambda row, k: row["lists"][:k])]
    for name, rank in estimates:
        for m in (1, 2):
            def pick(row, k, m=m, rank=rank):
                measured = [(at, entry) for at, entry in enumerate(row["lists"][:k]) if entry]
                return [entry for at, entry in sorted(
                    measured, key=lambda pair: rank(row, *pair))[:m]]
            lines.append(line(f"code for the {m} smallest by {name}" if name else
                              f"code for the advisor's first {m} (k = {m})", pick))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", help="a directory LLMCC_RECORD wrote, or a corpus's records")
    parser.add_argument("--lists", type=int, default=max(KS), help="lists per TU, in order")
    parser.add_argument("--forest", action="store_true",
                        help="the shipped forest's lists for each TU, not the popular lists")
    parser.add_argument("--per-package", type=int, default=0,
                        help="in a corpus's records, this many of each package's own TUs")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="size_proxy.jsonl")
    args = parser.parse_args()
    lists = args.lists if args.forest else [
        to_text(passes) for passes in PopularAdvisor.load().lists[:args.lists]]
    if glob.glob(os.path.join(args.records, "*", "*.bc")):
        tus = sample_tus(args.records, args.per_package or sys.maxsize, seed=42)
    else:
        tus = [("", path) for path in sorted(glob.glob(os.path.join(args.records, "*.bc")))]
    if not tus:
        parser.error(f"no recorded TUs in {args.records}")
    done = run_resumable(args.out, [(lists, path) for _, path in tus], measure, args.jobs)
    rows = [{**done[os.path.basename(path)], "group": group} for group, path in tus
            if os.path.basename(path) in done]
    if any(entry and len(entry) < ENTRY_LENGTH for row in rows for entry in row["lists"]):
        parser.error(f"{args.out} holds rows of an older size_proxy.py: give another --out")
    rows = [row for row in rows if row["baseline_size"] > 0]
    which = (f"the shipped forest's first {args.lists} lists for each" if args.forest else
             f"the first {args.lists} popular lists on each")
    print(f"{len(rows)} TUs of {len({row['group'] for row in rows})} package(s), {which}, "
          f"rows in {args.out} ({len(read_rows(args.out))} in all)\n")
    print(table(rows))
    shares = [entry[5] / entry[6] for row in rows for entry in row["lists"]
              if entry and entry[6] > 0]
    if shares:
        print(f"\nthe -O0 object cost {statistics.median(shares):.2f} of the list's opt run and "
              f"code generation (median of {len(shares)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

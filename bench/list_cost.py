"""What each candidate list costs a cold compile, beside what it saves: the data a cheaper choice
of lists would start from (a tried list costs about 0.9 of a plain compile, docs/benchmark.md).

    LLMCC_RECORD=DIR LLMCC_CANDIDATES=0 make ...     # record a project's TUs
    .venv/bin/python bench/list_cost.py DIR [--dataset DIR] [--jobs N] [--out rows.jsonl]

For every recorded TU it times clang's own pipeline with code generation (the baseline, what a
plain compile costs after its frontend, as llmcc.optimize.Evaluator measures it), then each list of the dataset's broadcast set: opt with
the list, then code generation, each run as a compile runs them (llmcc.optimize's commands), and
the object's size. Printed per list, over the TUs: the median of (opt + code generation) /
baseline, the same for opt alone, and the geometric-mean size of the list's objects against the
baseline's (a list never replaces a larger object in a compile, so only its savings count). Rows
are appended to --out as each TU completes; a rerun measures only the TUs not there yet.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import statistics
import sys
import tempfile
import time

from llmcc.interface import refusal
from llmcc.invocation import codegen_args
from llmcc.objfile import read_object
from llmcc.optimize import opt_command
from llmcc.passes import parse
from llmcc.toolchain import run
from llmcc.train import labelled
from llmcc.train.measure import read_rows, recorded_evaluator, run_resumable

TIMEOUT = 300.0


def timed(cmd: list[str]) -> float:
    """Seconds `cmd` took; RuntimeError if it failed."""
    started = time.perf_counter()
    code, _, err = run(cmd, TIMEOUT)
    if code != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} exited {code}: {err[:200]!r}")
    return time.perf_counter() - started


def measure(job: tuple[list[str], str]) -> dict:
    """One TU: the baseline's seconds and size, and each list's opt seconds, code generation
    seconds and size (the size None where the symbol rule refuses the object, as a compile
    would; the entry None where a tool failed)."""
    texts, bitcode = job
    with tempfile.TemporaryDirectory(prefix="llmcc-list-cost-") as work:
        evaluator = recorded_evaluator(bitcode, work, TIMEOUT)
        tools, obj = evaluator.tools, os.path.join(work, "out.o")
        baseline = evaluator.baseline()
        row = {"tu": os.path.basename(bitcode), "baseline_seconds": baseline.seconds,
               "baseline_size": baseline.size, "lists": {}}
        optimised = os.path.join(work, "optimised.bc")
        for text in texts:
            try:
                opt = timed(opt_command(tools, evaluator.pic, parse(text), bitcode, optimised))
                codegen = timed([tools.clang, *codegen_args(evaluator.codegen, optimised, obj,
                                                            False)])
                with open(obj, "rb") as handle:
                    info = read_object(handle.read())
                refused = refusal(info, evaluator.baseline_info, evaluator.hosted,
                                  evaluator.declared, evaluator.bodies, evaluator.cxx)
                row["lists"][text] = [opt, codegen, None if refused else info.size]
            except RuntimeError:
                row["lists"][text] = None
    return row


def table(rows: list[dict], texts: list[str]) -> str:
    lines = [("| list | cost / baseline (median) | opt / baseline | size vs baseline "
              "(geomean; refused or larger: 0) | TUs |"), "|---|---:|---:|---:|---:|"]
    stats = []
    for text in texts:
        measured = [(r, r["lists"][text]) for r in rows
                    if r["lists"].get(text) and r["baseline_size"] > 0]
        if not measured:
            continue
        cost = statistics.median((o + c) / r["baseline_seconds"] for r, (o, c, _) in measured)
        opt = statistics.median(o / r["baseline_seconds"] for r, (o, _, _) in measured)
        saving = math.exp(statistics.fmean(math.log(min(s or b, b) / b) for b, s in (
            (r["baseline_size"], size) for r, (_, _, size) in measured)))
        stats.append((cost, opt, saving, len(measured), text))
    for cost, opt, saving, n, text in sorted(stats):
        lines.append(f"| `{text}` | {cost:.2f} | {opt:.2f} | {100 * (saving - 1):+.2f}% | {n} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", help="a directory LLMCC_RECORD wrote")
    parser.add_argument("--dataset", default=labelled.DATASET_DIR,
                        help="whose broadcast lists to time (default: llmcc's dataset)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="TUs measured at once (1 keeps the timings free of each other)")
    parser.add_argument("--out", default="list_cost.jsonl")
    args = parser.parse_args()
    registry = labelled.read_lists(args.dataset)
    texts = [registry["lists"][i] for i in registry["broadcast"]]
    bitcodes = sorted(glob.glob(os.path.join(args.records, "*.bc")))
    if not bitcodes or not texts:
        parser.error(f"no recorded TUs in {args.records} or no broadcast lists in "
                     f"{args.dataset}")
    done = run_resumable(args.out, [(texts, path) for path in bitcodes], measure, args.jobs)
    rows = [done[os.path.basename(path)] for path in bitcodes if os.path.basename(path) in done]
    print(f"{len(rows)} TUs, {len(texts)} lists, rows in {args.out} "
          f"({len(read_rows(args.out))} in all)\n")
    print(table(rows, texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

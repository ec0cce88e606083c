"""What starting LLVM costs a cold compile, and what one LLVM process per compile saves.

    .venv/bin/python bench/opt_batch.py SOURCE_DIR [--k 3] [--reps 3]

For every C file of SOURCE_DIR (its own directory on the include path) it makes the IR a compile
starts from (clang-19 -Oz, no LLVM passes), then times, best of --reps: plain clang-19 -Oz -c of
the source; what a compile asked of LLVM besides clang before, the TU disassembled by llvm-dis
(the advisor's summary reads it) and the first k popular lists applied by one opt process each
(`optimize.opt_command`); and the same in one LLVM worker (`llvm_worker.Worker`: its fork and
loading of LLVM, the text, the lists), as a compile does now. Also the start of the tools alone:
`opt --version` and `clang -c` of an empty module. Prints a row per file and the sums.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import sys
import tempfile
import time

from list_cost import timed

from llmcc import llvm_worker
from llmcc.advisor.popular import PopularAdvisor
from llmcc.optimize import opt_command
from llmcc.passes import to_pipeline
from llmcc.toolchain import check_tools, default_clang, find_llvm_dis, llvm_version


def best(seconds, reps: int) -> float:
    """The fastest of `reps` runs of `seconds()`, a callable that returns one run's time."""
    return min(seconds() for _ in range(reps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", help="a directory of C files")
    parser.add_argument("--k", type=int, default=3, help="lists per TU (default 3)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each, the best kept")
    args = parser.parse_args()
    tools = check_tools(default_clang("", os.environ.get("PATH", ""), frozenset()), "")
    library, version = llvm_worker.library_beside(tools.opt), llvm_version(tools.version)
    if library is None:
        sys.exit(f"no shared LLVM library beside {tools.opt}")
    lists = PopularAdvisor.load().lists[:args.k]
    with tempfile.TemporaryDirectory(prefix="llmcc-opt-batch-") as work:
        empty = os.path.join(work, "empty.bc")
        subprocess.run([tools.clang, "-c", "-emit-llvm", "-x", "c", "/dev/null", "-o", empty],
                       check=True)
        starts = {"opt --version": [timed([tools.opt, "--version"]) for _ in range(20)],
                  "clang -c, empty module": [timed([tools.clang, "-c", "-x", "ir", empty, "-o",
                                                    os.path.join(work, "e.o")])
                                             for _ in range(20)]}
        for name, runs in starts.items():
            print(f"{name}: {1000 * statistics.median(runs):.1f} ms (median of 20)")
        print(f"\n| file | plain -Oz ms | llvm-dis + {args.k} opt runs ms | one worker ms |")
        print("|---|---:|---:|---:|")
        sums = [0.0, 0.0, 0.0]
        for source in sorted(glob.glob(os.path.join(args.sources, "*.c"))):
            row = measure(tools, library, version, lists, source, work, args.reps)
            if row is None:
                continue
            sums = [a + b for a, b in zip(sums, row)]
            print(f"| {os.path.basename(source)} | " + " | ".join(f"{1000 * s:.0f}" for s in row)
                  + " |")
        print(f"| **all, / plain** | 1.00 | {sums[1] / sums[0]:.2f} | {sums[2] / sums[0]:.2f} |")


def measure(tools, library: str, version: str, lists, source: str, work: str,
            reps: int) -> list[float] | None:
    """[plain compile, llvm-dis and opt once per list, one worker] seconds for one C file; None
    if its frontend fails."""
    bitcode = os.path.join(work, "tu.bc")
    frontend = [tools.clang, "-Oz", "-I", os.path.dirname(source), "-c", source]
    if subprocess.run([*frontend, "-emit-llvm", "-Xclang", "-disable-llvm-passes", "-o", bitcode],
                      capture_output=True, check=False).returncode != 0:
        return None
    outs = [os.path.join(work, f"c{i}.bc") for i in range(len(lists))]
    llvm_dis = find_llvm_dis(tools.opt, tools.clang)
    return [best(lambda: timed([*frontend, "-o", os.path.join(work, "plain.o")]), reps),
            best(lambda: timed([llvm_dis, "-o", os.devnull, bitcode])
                 + sum(timed(opt_command(tools, True, p, bitcode, o)) for p, o in zip(lists, outs)),
                 reps),
            best(lambda: timed_batch(library, version, bitcode, lists, outs), reps)]


def timed_batch(library: str, version: str, bitcode: str, lists, outs: list[str]) -> float:
    """Seconds to start a worker (fork, load LLVM), have the TU's text and apply `lists`."""
    started = time.perf_counter()
    worker = llvm_worker.Worker(library, version, bitcode, 300)
    try:
        worker.text()
        for passes, out in zip(lists, outs):
            worker.apply(to_pipeline(passes), out, True)
    finally:
        worker.close()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()

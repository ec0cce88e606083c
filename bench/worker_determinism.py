"""Whether a list's IR depends on the process that runs it: recorded TUs' lists applied in fresh
LLVM workers, run after run, against opt's IR for the same list and TU.

    .venv/bin/python bench/worker_determinism.py DIR [--runs 10] [--tus N]

DIR holds TUs recorded by `LLMCC_RECORD=DIR` (docs/benchmark.md, "Where a cold build's time
goes", says how the 19 of zopfli's and bzip2's libraries were recorded). The lists are the
shipped forest's 101, those llmcc never runs included (llmcc.passes.NEVER_RUN): this is how
gvn-sink was caught. For each TU, `--runs` fresh processes each start the worker a compile
starts (llmcc.llvm_worker) and apply every list in turn; opt, one process per list, gives the
reference. A fresh process has a heap of its own, laid out by its own history and the system's
address randomisation: a pass whose result depends on where LLVM's objects lie in memory gives
different IR in some runs. Prints each list that ever differed: on how many TUs, in how many
runs.
"""

from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile

from llmcc.advisor.forest import FOREST_FILE, Forest
from llmcc.optimize import opt_command
from llmcc.passes import to_pipeline, to_text
from llmcc.train.measure import recorded_evaluator


def _digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.blake2b(handle.read(), digest_size=16).hexdigest()


def worker_digests(bitcode: str, lists: list) -> list[str]:
    """Each list's IR digest from one worker, as a compile applies lists ("failed" if it did)."""
    digests = []
    with tempfile.TemporaryDirectory() as workdir:
        evaluator = recorded_evaluator(bitcode, workdir, 120)
        worker = evaluator._llvm()
        if worker is None:
            sys.exit("bench/worker_determinism.py: the LLVM worker cannot run here")
        try:
            for number, passes in enumerate(lists):
                out = os.path.join(workdir, f"{number}.bc")
                try:
                    worker.apply(to_pipeline(passes), out, evaluator.pic)
                    digests.append(_digest(out))
                except Exception:  # noqa: BLE001 - a failed list is a result, not a crash
                    digests.append("failed")
        finally:
            evaluator.close()
    return digests


def opt_digests(bitcode: str, lists: list) -> list[str]:
    """Each list's IR digest from its own opt process ("failed" if opt failed)."""
    digests = []
    with tempfile.TemporaryDirectory() as workdir:
        evaluator = recorded_evaluator(bitcode, workdir, 120)
        out = os.path.join(workdir, "out.bc")
        for passes in lists:
            done = subprocess.run(opt_command(evaluator.tools, evaluator.pic, passes, bitcode, out),
                                  capture_output=True, check=False)
            digests.append(_digest(out) if done.returncode == 0 else "failed")
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="?", help="directory of recorded TUs (LLMCC_RECORD)")
    parser.add_argument("--runs", type=int, default=10, help="fresh worker processes per TU")
    parser.add_argument("--tus", type=int, default=0, help="only the first N TUs (0: all)")
    parser.add_argument("--child", metavar="TU", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lists = Forest.load(FOREST_FILE).lists
    if args.child:  # one fresh process: one run of the worker on one TU
        print(json.dumps(worker_digests(args.child, lists)))
        return 0
    if not args.records:
        parser.error("give the directory of recorded TUs")
    tus = sorted(glob.glob(os.path.join(args.records, "*.bc")))[:args.tus or None]
    if not tus:
        parser.error(f"no recorded TUs (*.bc with their .json) in {args.records}")
    differed: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for bitcode in tus:
        reference = opt_digests(bitcode, lists)
        for _ in range(args.runs):
            run = json.loads(subprocess.run([sys.executable, __file__, "--child", bitcode],
                                            capture_output=True, text=True, check=True).stdout)
            for number, (ours, theirs) in enumerate(zip(run, reference, strict=True)):
                if ours != theirs:
                    differed[number][os.path.basename(bitcode)] += 1
        print(f"{os.path.basename(bitcode)}: {args.runs} runs, "
              f"{sum(os.path.basename(bitcode) in c for c in differed.values())} lists differed",
              flush=True)
    print(f"\n{len(tus)} TUs x {len(lists)} lists x {args.runs} fresh workers, against opt:")
    if not differed:
        print("every list gave opt's IR in every run")
    for number, by_tu in sorted(differed.items()):
        print(f"- `{to_text(lists[number])}`: {len(by_tu)} TUs, {sum(by_tu.values())} runs "
              f"of {len(by_tu) * args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

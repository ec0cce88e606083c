"""Learning from your own code, shown on one test-split package: half of its TUs added to
training, the other half evaluated, against the model trained without them.

    .venv/bin/python bench/half_package.py PACKAGE [--model SHIPPED | --forest [SHIPPED]]
                                               [--work DIR] [-- TRAIN ARGS]

The package's labelled test rows (per-TU search and broadcast: what `llmcc-ctl label DIR`
computes for TUs recorded with LLMCC_RECORD=DIR) are split in two halves by summary hash, each
written where `llmcc-ctl label` writes a user's labels (DIR/labels). Then, as a user would:

    llmcc-ctl train --add HALF1 --out mine.gguf [FIT ARGS]
    llmcc-ctl eval HALF2 --model mine.gguf
    llmcc-ctl eval HALF2 --model SHIPPED

and the two tables are printed one after the other. With --forest the same for the forest
advisor (`llmcc-ctl train --forest --add HALF1 --out mine.bin`, `llmcc-ctl eval HALF2 --forest
mine.bin`, then the shipped forest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

from llmcc.advisor.forest import FOREST_FILE
from llmcc.advisor.model import DEFAULT_MODEL
from llmcc.train import labelled

CTL = os.path.join(os.path.dirname(sys.executable), "llmcc-ctl")


def half_of(row: dict) -> int:
    """0 or 1, by the hash of the TU's summary: a file built twice (static and shared objects)
    has one summary, so its two TUs land in the same half and the second half holds no TU the
    first has taught already."""
    summary = json.dumps(row["summary"], sort_keys=True).encode()
    return hashlib.blake2b(summary).digest()[0] % 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the model to compare with")
    parser.add_argument("--forest", nargs="?", const=FOREST_FILE, metavar="SHIPPED",
                        help="the forest advisor instead, compared with SHIPPED (default: "
                        "the forest llmcc ships)")
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    parser.add_argument("--work", help="where the halves and mine.gguf (mine.bin) go "
                        "(default: temporary)")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, fit = parser.parse_args(argv[:split]), argv[split + 1:]
    rows = {row["tu"]: row for row in labelled.read_all(args.dataset)
            if row["package"] == args.package and row["split"] == "test" and "broadcast" in row}
    if not rows:
        parser.error(f"{args.package}: no labelled test TUs in {args.dataset}")
    registry = labelled.read_lists(args.dataset)
    work = args.work or tempfile.mkdtemp(prefix="llmcc-half-package-")
    halves = []
    for half in ("half1", "half2"):
        directory = os.path.join(work, half)
        its_rows = {tu: {**row, "split": "train", "package": half} for tu, row in rows.items()
                    if half_of(row) == len(halves)}
        labelled.write_package(os.path.join(directory, "labels"), half, its_rows)
        labelled.write_lists(os.path.join(directory, "labels"), registry)
        halves.append(directory)
    grow, score, shipped = (["--forest"], "--forest", args.forest) if args.forest else \
        ([], "--model", args.model)
    mine = os.path.join(work, "mine.bin" if args.forest else "mine.gguf")
    dataset = ["--dataset", args.dataset]
    subprocess.run([CTL, "train", *grow, "--add", halves[0], "--out", mine, *dataset, *fit],
                   check=True)
    for advisor in (mine, shipped):
        print(f"\n## {args.package}, second half, {score[2:]} {advisor}\n", flush=True)
        subprocess.run([CTL, "eval", halves[1], score, advisor, *dataset], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

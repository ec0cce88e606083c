"""The forest of the rule registered on 2026-12-06 (README "Without newgvn"): grown as
`llmcc-ctl train --forest` grows the shipped one, but with every list llmcc never runs
(llmcc.passes.MISCOMPILING) counted as refused, as `llmcc-ctl eval` counts it, so its trees learn
only from lists a compile may try.

    .venv/bin/python bench/forest_never_run.py FILE      (2 minutes here; pip install .[train])
    .venv/bin/llmcc-ctl eval --forest FILE --split validation

Until that forest is shipped (and `llmcc-ctl train --forest` itself counts them refused), this is
the command behind the README's figures for it.
"""

from __future__ import annotations

import argparse

from llmcc.files import write_atomic
from llmcc.train import forest, labelled
from llmcc.train.evaluate import runnable


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="forest file to write")
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    args = parser.parse_args()
    train, pool, texts = forest.training_set(args.dataset)
    pool = runnable(pool, texts)
    ratios = forest.log_ratios([r["baseline"] for r in pool], [r["sizes"] for r in pool])
    blob = forest.shipped([r["summary"] for r in train], ratios, texts,
                          made={"command": "bench/forest_never_run.py", "tus": len(train)})
    write_atomic(args.out, blob)
    print(f"{args.out}: {len(blob) / 1e6:.1f} MB, {forest.TREES} trees on {len(train)} TUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

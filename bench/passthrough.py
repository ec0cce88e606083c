"""Passthrough and hit latency: what one call that llmcc hands straight to clang costs, and
what one direct-mode hit costs, call by call.

    .venv/bin/python bench/passthrough.py [--calls 200]

The build benchmark reports the passthrough cost as the difference between two whole `make -j2`
builds divided by the number of calls, which hides part of it behind the other job. This runs
single calls, one at a time: `clang-19 -O0 -c` on a small C file and the same through llmcc
(-O0 is not intercepted, so llmcc only reads its settings, classifies the call and execs clang),
alternating so both see the same machine load. llmcc runs as a regular install (a pinned copy
in its own venv, see build.py's pin_llmcc), not as a developer's editable one. Then the same
for `-Oz -c` on a small file that includes two C library headers, once llmcc has compiled it:
each llmcc call is a direct-mode hit (checked in the stats), against plain clang compiling it.
Prints the median and 90th percentile of each and of the per-pair difference, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build import clean_environment, pin_llmcc

SOURCE = "int work(int n) { int s = 0; for (int i = 0; i < n; i++) s += i * 3; return s; }\n"
HIT_SOURCE = ("#include <stdio.h>\n#include <string.h>\n"
              "int vowels(const char *s) { int n = 0; for (; *s; s++) n += !!strchr(\"aeiou\", *s);"
              " printf(\"%d\\n\", n); return n; }\n")


def timed(cmd: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def alternate(calls: int, plain_cmd: list[str], llmcc_cmd: list[str], work: str,
              env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Each command `calls` times, one after the other, after five warm-up calls of llmcc."""
    for _ in range(5):  # warm the page cache and the cache directory
        timed(llmcc_cmd, work, env)
    plain, ours = [], []
    for _ in range(calls):
        plain.append(timed(plain_cmd, work, env))
        ours.append(timed(llmcc_cmd, work, env))
    return plain, ours


def table(title: str, plain: list[float], ours: list[float]) -> None:
    extra = [o - p for o, p in zip(ours, plain)]
    print(f"{title} (ms):")
    print("| | median | p90 |\n|---|---:|---:|")
    for name, values in (("plain clang-19", plain), ("through llmcc", ours),
                         ("llmcc's extra time per call", extra)):
        print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.9):.1f} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmcc-passthrough-") as work:
        llmcc = pin_llmcc(Path(work) / "venv")
        Path(work, "x.c").write_text(SOURCE)
        Path(work, "hit.c").write_text(HIT_SOURCE)
        env = clean_environment({"LLMCC_CACHE_DIR": os.path.join(work, "cache")})
        command = ["-O0", "-c", "x.c", "-o", "x.o"]
        passthrough = alternate(args.calls, ["clang-19", *command], [llmcc.cc, *command], work,
                                env)
        command = ["-Oz", "-c", "hit.c", "-o", "hit.o"]
        hits = alternate(args.calls, ["clang-19", *command], [llmcc.cc, *command], work, env)
        stats = subprocess.run([*llmcc.ctl, "stats"], cwd=work, env=env, capture_output=True,
                               text=True, check=True).stdout
    table(f"{args.calls} calls of `-O0 -c` on a one-function C file, one at a time",
          *passthrough)
    table(f"{args.calls} calls of `-Oz -c` on a file with two C library headers, each through "
          "llmcc a direct-mode hit, one at a time", *hits)
    hit_count = int(stats.split("hits direct")[1].split()[0])
    print(f"direct-mode hits: {hit_count} of {args.calls + 4} calls after the first")


if __name__ == "__main__":
    main()

"""CPU of cold compiles and of direct-mode hits, with and without the fork server
(llmcc.forkserver), against plain clang -Oz, one C file at a time.

    .venv/bin/python bench/fork_server.py DIR [--reps 5]

For every C file of DIR (not recursing; run it where the sources' headers are found, e.g. a
tree bench/build.py unpacks): the median over --reps compiles of the CPU seconds of plain
`clang-19 -Oz -c`, of llmcc with LLMCC_FORK_SERVER=0 and of llmcc through its fork server
(the asking process, the server's child and every tool either ran). Each cold compile gets IR
no cache has seen (a fresh global appended to a copy of the file); a hit recompiles a file
unchanged. The server is started (and paid for) before the timed compiles; its own CPU while
idle is not counted. Everything runs in a temporary directory with its own cache and runtime
directory.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build import fork_server_cpu, installed_llmcc, stop_fork_servers

SETTLE = 0.2  # seconds for the server to reap the last child before its CPU is read


def cpu_of(cmd: list[str], cwd: Path, env: dict[str, str], runtime: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = sum(fork_server_cpu(runtime).values())
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    time.sleep(SETTLE)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            + sum(fork_server_cpu(runtime).values()) - served)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    sources = sorted(p for p in args.directory.glob("*.c"))
    if not sources:
        sys.exit(f"bench/fork_server.py: no C files in {args.directory}")
    llmcc, clang = installed_llmcc().cc, shutil.which("clang-19") or "/usr/lib/llvm-19/bin/clang"
    work = Path(tempfile.mkdtemp(prefix="llmcc-fs-", dir="/tmp"))  # short: a socket path
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCC_")}
    env.update(LLMCC_CONFIG=os.devnull, LLMCC_CACHE_DIR=str(work / "cache"),
               XDG_RUNTIME_DIR=str(runtime))
    ways = {"plain": ([clang], {}), "own process": ([llmcc], {"LLMCC_FORK_SERVER": "0"}),
            "fork server": ([llmcc], {"LLMCC_FORK_SERVER": "1"})}
    try:
        # start the server and wait until it serves
        (work / "warm.c").write_text("int warm;\n")
        subprocess.run([llmcc, "-Oz", "-c", "warm.c"], cwd=work, env=env, check=True)
        deadline = time.monotonic() + 30
        while not list((runtime / "llmcc").glob("forkserver-*.sock")):
            if time.monotonic() > deadline:
                sys.exit("bench/fork_server.py: the fork server did not start")
            time.sleep(0.05)
        totals = {(way, kind): 0.0 for way in ways for kind in ("cold", "hit")}
        print("| file | " + " | ".join(f"{way} {kind} ms" for kind in ("cold", "hit")
                                        for way in ways) + " |")
        print("|---|" + "---:|" * (2 * len(ways)))
        for source in sources:
            copy = work / source.name
            row = {}
            for number, (way, (program, extra)) in enumerate(ways.items()):
                cold = []
                for rep in range(args.reps):
                    copy.write_text(source.read_text(errors="surrogateescape")
                                    + f"\nint llmcc_bench_{os.getpid()}_{rep}_{number};\n")
                    cold.append(cpu_of([*program, "-Oz", f"-I{source.parent}", "-c", str(copy),
                                        "-o", str(work / "out.o")], work, {**env, **extra},
                                       runtime))
                hits = [cpu_of([*program, "-Oz", f"-I{source.parent}", "-c", str(copy), "-o",
                                str(work / "out.o")], work, {**env, **extra}, runtime)
                        for _ in range(args.reps)]
                row[way, "cold"], row[way, "hit"] = map(statistics.median, (cold, hits))
            for key, value in row.items():
                totals[key] += value
            print(f"| {source.name} | " + " | ".join(
                f"{1000 * row[way, kind]:.1f}" for kind in ("cold", "hit") for way in ways)
                + " |")
        print(f"| **all {len(sources)}** | " + " | ".join(
            f"{1000 * totals[way, kind]:.1f}" for kind in ("cold", "hit") for way in ways)
            + " |")
    finally:
        stop_fork_servers(runtime)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

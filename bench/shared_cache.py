"""Shared decision cache: two machines' builds, simulated as two caches sharing one Redis.

    .venv/bin/python bench/shared_cache.py [--projects bzip2,libyaml,lmdb,zopfli,libdeflate]

Per project (the build benchmark's, Debian packages outside the training allowlist): machine A
builds it cold with its own empty cache and a fresh redis-server (so Redis holds A's decisions),
then machine B builds it cold with another empty cache, once sharing that Redis and once alone.
Prints B's share of compiles served by Redis (the rest are its own cache's hits, a TU built
twice, or decided here), and its wall time with and without Redis, beside a plain clang build. `make -jN` (default 2), llmcc pinned as a user installs it (see build.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from build import (
    DEFAULT_PROJECTS,
    PROJECTS,
    Workspace,
    _cache_root,
    clean_environment,
    pin_llmcc,
    pristine_tree,
    read_log,
)


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(directory)],
                              stdout=subprocess.DEVNULL)
    for _ in range(100):
        ping = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                              text=True, check=False)
        if ping.stdout.strip() == "PONG":
            return server, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def two_machines(name: str, work: Path, llmcc, cache: Path, jobs: int) -> tuple:
    """(project, compiles, served by Redis, decided here, B shared s, B alone s, plain s)."""
    project = PROJECTS[name]
    (work / "logs").mkdir(exist_ok=True)
    log = work / "logs" / f"{name}.log"
    ws = Workspace(project, pristine_tree(project.package, cache), work / name, work / "logs",
                   jobs, "clang-19", llmcc)
    plain_env = clean_environment({})
    ws.configure(False, "-Oz", plain_env, log)
    plain, _ = ws.build(plain_env, log)
    server, url = start_redis(work)

    def machine(label: str, shared: bool) -> tuple[float, list[dict]]:
        events = work / f"{name}-{label}.jsonl"
        env = clean_environment({"LLMCC_CACHE_DIR": str(work / f"{name}-{label}"),
                                 "LLMCC_LOG": str(events),
                                 **({"LLMCC_CACHE_URL": url} if shared else {})})
        ws.configure(True, "-Oz", env, log)
        done, _ = ws.build(env, log)
        return done.wall, read_log(events)

    try:
        machine("a", True)
        shared_wall, shared_events = machine("b-shared", True)
        alone_wall, _ = machine("b-alone", False)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work / name, ignore_errors=True)
    compiles = [e for e in shared_events if e["outcome"] != "passthrough"]
    remote = sum(1 for e in compiles if e["outcome"] == "remote_hit")
    searched = sum(1 for e in compiles if e["outcome"] == "miss")
    return name, len(compiles), remote, searched, shared_wall, alone_wall, plain.wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", default=",".join(DEFAULT_PROJECTS))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmcc-shared-") as scratch:
        work = Path(scratch)
        llmcc = pin_llmcc(work / "venv")
        rows = [two_machines(name, work, llmcc, _cache_root(), args.jobs)
                for name in args.projects.split(",")]
    print(f"machine B's cold build, make -j{args.jobs} (seconds of wall time):\n")
    print("| project | compiles | served by Redis | decided here | B alone | B sharing A's Redis "
          "| sharing / alone | plain clang |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, tus, remote, searched, shared, alone, plain in rows:
        print(f"| {name} | {tus} | {remote} ({100 * remote / max(1, tus):.0f}%) | {searched} | "
              f"{alone:.1f} | {shared:.1f} | {shared / alone:.2f}x | {plain:.1f} |")


if __name__ == "__main__":
    main()

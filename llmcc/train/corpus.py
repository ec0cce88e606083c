"""Build allowlisted Debian source packages through llmcc in record mode: a corpus of real TUs.

    python -m llmcc.train.corpus --work ~/.cache/llmcc-corpus zlib lz4 jansson

Each package is fetched with `apt-get source --download-only` (deb-src must be enabled, see the
README), unpacked, and built with its own build system with `CC=llmcc CFLAGS=-Oz` and
`LLMCC_RECORD`, so every TU's frontend IR and code generation flags land in
`<work>/records/<package>/`. Resumable: a package with a `done` marker is skipped; one that
fails to build is recorded as skipped with the reason. Only packages from ALLOWLIST may be used:
other real code is kept to evaluate llmcc on code it never saw.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile

# The Debian source packages training data may come from (../shared/NOTES.md).
ALLOWLIST = (
    "zlib", "libpng1.6", "lz4", "zstd", "xz-utils", "brotli", "expat", "jansson", "pcre2",
    "libsodium", "sqlite3", "lua5.4", "gzip", "sed", "grep", "less", "bc", "dash", "make-dfsg",
    "m4", "flex", "gawk", "diffutils", "patch", "tar", "cpio", "file", "libxml2", "readline",
    "ncurses", "libevent", "libuv1", "tmux", "redis", "memcached", "nginx", "curl", "busybox",
    "coreutils", "findutils", "tcl8.6", "libffi", "nettle", "gmp", "mpfr4", "libarchive",
)
BUILD_TIMEOUT = 1800


def fetch(package: str, downloads: str) -> str:
    """The package's upstream tarball, downloaded once."""
    if package not in ALLOWLIST:
        raise SystemExit(f"{package} is not in the training allowlist")
    where = os.path.join(downloads, package)
    found = glob.glob(os.path.join(where, "*.orig.tar.*"))
    if not found:
        os.makedirs(where, exist_ok=True)
        subprocess.run(["apt-get", "source", "--download-only", package], cwd=where, check=True,
                       capture_output=True)
        found = glob.glob(os.path.join(where, "*.orig.tar.*"))
    if not found:
        raise RuntimeError(f"no upstream tarball for {package}")
    return min(found)


def unpack(tarball: str, into: str) -> str:
    """A fresh source tree; returns its top directory."""
    shutil.rmtree(into, ignore_errors=True)
    os.makedirs(into)
    with tarfile.open(tarball) as archive:
        archive.extractall(into, filter="data")
    entries = os.listdir(into)
    return os.path.join(into, entries[0]) if len(entries) == 1 else into


def build_commands(tree: str) -> list[list[str]]:
    """The package's own build system, driven the way a user would with CC=llmcc."""
    jobs = f"-j{os.cpu_count() or 2}"
    if os.path.exists(os.path.join(tree, "configure")):
        return [["./configure"], ["make", "-k", jobs]]
    if os.path.exists(os.path.join(tree, "CMakeLists.txt")):
        return [["cmake", "-S", ".", "-B", "llmcc-build", "-DCMAKE_BUILD_TYPE=MinSizeRel",
                 "-DCMAKE_C_FLAGS_MINSIZEREL=-Oz", "-DBUILD_TESTING=OFF"],
                ["cmake", "--build", "llmcc-build", "--", "-k", jobs]]
    if os.path.exists(os.path.join(tree, "Makefile")) or os.path.exists(
            os.path.join(tree, "makefile")):
        return [["make", "-k", jobs, "CC=llmcc", "CFLAGS=-Oz"]]
    raise RuntimeError("no CMakeLists.txt, configure or Makefile")


def build(package: str, work: str, environ: dict[str, str]) -> dict:
    """Build one package in record mode; returns its summary line."""
    records = os.path.join(work, "records", package)
    marker = os.path.join(records, "done.json")
    if os.path.exists(marker):
        with open(marker) as handle:
            return json.load(handle)
    summary: dict = {"package": package}
    try:
        tree = unpack(fetch(package, os.path.join(work, "downloads")),
                      os.path.join(work, "trees", package))
    except (subprocess.CalledProcessError, RuntimeError, OSError, tarfile.TarError) as err:
        return {**summary, "tus": 0, "skipped": f"cannot fetch or unpack: {err}"}
    env = {**environ, "CC": "llmcc", "CXX": "llmcc++", "CFLAGS": "-Oz", "CXXFLAGS": "-Oz",
           "LLMCC_ADVISOR": "none", "LLMCC_CANDIDATES": "0",
           "LLMCC_CACHE_DIR": os.path.join(work, "cache")}
    log_path = os.path.join(work, "logs", package + ".log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    try:
        with open(log_path, "w") as log:
            for cmd in build_commands(tree):
                building = cmd[0] == "make" or cmd[:2] == ["cmake", "--build"]
                # configure's test programs are not the package's code: record the build only
                subprocess.run(cmd, cwd=tree, env={**env, "LLMCC_RECORD": records} if building
                               else env, stdout=log, stderr=subprocess.STDOUT,
                               timeout=BUILD_TIMEOUT, check=not building)
    except (subprocess.SubprocessError, RuntimeError, OSError) as err:
        summary["skipped"] = f"build failed: {err}"
    summary["tus"] = len(glob.glob(os.path.join(records, "*.bc")))
    if summary["tus"] == 0 and "skipped" not in summary:
        summary["skipped"] = "no TU was recorded (nothing compiled at -Oz through llmcc?)"
    os.makedirs(records, exist_ok=True)
    with open(marker, "w") as handle:
        json.dump(summary, handle)
    shutil.rmtree(os.path.join(work, "trees", package), ignore_errors=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("packages", nargs="*", default=list(ALLOWLIST))
    args = parser.parse_args(argv)
    print(f"{'package':<14} {'TUs':>5}  note")
    total = 0
    for package in args.packages:
        summary = build(package, args.work, dict(os.environ))
        total += summary["tus"]
        print(f"{package:<14} {summary['tus']:>5}  {summary.get('skipped', '')}", flush=True)
    print(f"{'total':<14} {total:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

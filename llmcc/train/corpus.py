"""Build allowlisted Debian source packages through llmcc in record mode: the training dataset.

    python -m llmcc.train.corpus --work ~/.cache/llmcc-corpus zlib lz4 jansson

Each package is fetched with `apt-get source --download-only` (deb-src must be enabled, see the
README), the newest version whose files the mirrors have, unpacked, and built with its own build
system (at the top of the tarball or in a subdirectory; `autoreconf -fi` first where there is
only a configure.ac) with `CC=llmcc CFLAGS=-Oz`. Only the build step runs with `LLMCC_RECORD`,
so every TU of the package, and no configure test program, lands in `<work>/records/<package>/`.
Resumable: a package with a `done.json` marker is not built again (`--retry-skipped` retries
those that failed, with the reason kept in the marker). At the end `<work>/dataset.json` is
rewritten and printed as a table (`llmcc.train.dataset`). Only packages from ALLOWLIST may be
used: other real code is kept to evaluate llmcc on code it never saw.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from typing import IO

from llmcc.progress import StatusLine
from llmcc.train.dataset import (
    OWNER_ORDER,
    read_marker,
    split_of,
    table,
    write_manifest,
    write_marker,
)
from llmcc.train.debian import FetchFailed, fetch

# The Debian source packages training data may come from (../shared/NOTES.md).
ALLOWLIST = (
    "zlib", "libpng1.6", "lz4", "zstd", "xz-utils", "brotli", "expat", "jansson", "pcre2",
    "libsodium", "sqlite3", "lua5.4", "gzip", "sed", "grep", "less", "bc", "dash", "make-dfsg",
    "m4", "flex", "gawk", "diffutils", "patch", "tar", "cpio", "file", "libxml2", "readline",
    "ncurses", "libevent", "libuv1", "tmux", "redis", "memcached", "nginx", "curl", "busybox",
    "coreutils", "findutils", "tcl8.6", "libffi", "nettle", "gmp", "mpfr4", "libarchive",
    # C++, recorded through llmcc++
    "fmtlib", "snappy", "leveldb", "re2", "yaml-cpp", "ninja-build", "taglib", "libebml",
    "libmatroska", "google-glog", "gflags", "googletest",
    # Added 2026-12-04 for more train TUs: packages split_of puts in train (C, then C++); none
    # of the benchmark's projects (bench/build.py refuses those on this list).
    "byacc", "c-ares", "ed", "flac", "gdbm", "giflib", "hiredis", "indent", "iniparser",
    "jq", "lame", "libcbor", "libconfig", "libev", "libgpg-error", "libmd", "libogg", "libonig",
    "libtasn1-6", "libwebp", "mawk", "msgpack-c", "mujs", "opus", "popt", "sharutils", "speex",
    "tree", "units", "wavpack",
    "pugixml", "tinyxml2", "libyuv",
    # Added 2026-12-05 for more C++ train TUs (427 against 3,330 C ones): C++ packages split_of
    # puts in train. muparser (wants OpenMP), tinyxml and woff2 (their builds ignore CXXFLAGS),
    # soundtouch (its build forces -Ofast), and astyle, re2c, libzen, game-music-emu, aspell,
    # libsass, uncrustify and libraw (their tarballs are gone from the mirror) give no TUs, as
    # the corpus manifest says.
    "libjsoncpp", "tinyxml", "muparser", "astyle", "woff2", "graphite2", "hunspell", "re2c",
    "clasp", "libsass", "libmodplug", "soundtouch", "game-music-emu", "libzen", "aspell",
    "gnuchess", "libde265", "libraw", "google-perftools", "uncrustify", "exiv2", "libopenmpt",
)
STEP_TIMEOUT = 1800
BUILDING = "building"  # the one phase that runs with LLMCC_RECORD
_CONFIGURE = ("configuring", ("./configure",))
_MAKE = (BUILDING, ("make", "-k", "-j{jobs}"))
_PLAIN_MAKE = ((BUILDING, ("make", "-k", "-j{jobs}", "CC=llmcc", "CFLAGS=-Oz")),)
# How a tree is built, by the file that says so, best first: (phase, command) steps.
BUILD_SYSTEMS = {
    "configure": (_CONFIGURE, _MAKE),
    "CMakeLists.txt": (
        ("configuring", ("cmake", "-S", ".", "-B", "llmcc-build", "-DCMAKE_BUILD_TYPE=MinSizeRel",
                         "-DCMAKE_C_FLAGS_MINSIZEREL=-Oz", "-DCMAKE_CXX_FLAGS_MINSIZEREL=-Oz",
                         "-DBUILD_TESTING=OFF")),
        (BUILDING, ("cmake", "--build", "llmcc-build", "--", "-k", "-j{jobs}"))),
    "configure.ac": (("generating configure", ("autoreconf", "-fi")), _CONFIGURE, _MAKE),
    "Makefile": _PLAIN_MAKE, "makefile": _PLAIN_MAKE, "GNUmakefile": _PLAIN_MAKE,
}
# Build systems only a recipe chooses (their files are too common to look for).
RECIPE_SYSTEMS = {
    "Kconfig": (("configuring", ("make", "defconfig")),
                (BUILDING, ("make", "-k", "-j{jobs}", "CC=llmcc"))),
}
SEARCH_DEPTH = 2  # how far below the tarball's top a build system is looked for
# Packages the general rule gets wrong: (directory in the tarball, build file to use there).
RECIPES = {
    "brotli": ("", "CMakeLists.txt"),  # ./configure only prints advice, the Makefile forces -O2
    "tcl8.6": ("unix", "configure"),  # not macosx/GNUmakefile, which builds an Xcode project
    "busybox": ("", "Kconfig"),  # configured by `make defconfig`, not a configure script
}
# Options a package's configure step (./configure or cmake) needs to build here: without
# optional libraries, or without tests whose sources Debian's tarball leaves out.
CONFIGURE_OPTIONS = {
    "curl": ("--without-ssl", "--without-libpsl"),
    "fmtlib": ("-DFMT_TEST=OFF",),
    "google-glog": ("-DWITH_GTEST=OFF",),
    "leveldb": ("-DLEVELDB_BUILD_TESTS=OFF", "-DLEVELDB_BUILD_BENCHMARKS=OFF"),
    "libopenmpt": ("--without-mpg123", "--without-ogg", "--without-vorbis", "--without-vorbisfile",
                   "--without-portaudio", "--without-portaudiocpp", "--without-sndfile",
                   "--without-flac", "--disable-openmpt123", "--disable-examples",
                   "--disable-tests", "--disable-doxygen-doc"),
    "nginx": ("--without-http_rewrite_module", "--without-http_gzip_module"),
    "snappy": ("-DSNAPPY_BUILD_TESTS=OFF", "-DSNAPPY_BUILD_BENCHMARKS=OFF"),
    "yaml-cpp": ("-DYAML_CPP_BUILD_TESTS=OFF",),
}


class Skip(Exception):
    """A package that cannot be built; the message is the reason the summary shows."""


# Debian's re2 source leaves out the generated Unicode and Perl class tables; debian/rules
# builds them from unicode-data with upstream's generators (REBUILD_TABLES=1), and so does this.
RE2_TABLES = {"re2/perl_groups.cc": ("perl", "re2/make_perl_groups.pl"),
              "re2/unicode_casefold.cc": ("python3", "re2/make_unicode_casefold.py"),
              "re2/unicode_groups.cc": ("python3", "re2/make_unicode_groups.py")}
RE2_UNICODE = "/usr/share/unicode"
DEBIAN_PYTHON = "/usr/bin/python3"  # the generators import six: Debian's python3-six


def generate_re2_tables(tree: str) -> None:
    """Write RE2's generated tables into its source tree (see RE2_TABLES); Skip says why not."""
    if not os.path.exists(os.path.join(RE2_UNICODE, "UnicodeData.txt")):
        raise Skip("RE2's tables need Unicode data: apt-get install unicode-data")
    unicode_py = os.path.join(tree, "re2", "unicode.py")
    with open(unicode_py) as handle:
        text = handle.read()
    if '\n_UNICODE_DIR = "https://' not in text:  # what Debian's debian-unicode-data.patch changes
        raise Skip("re2/unicode.py does not name its data directory as expected")
    with open(unicode_py, "w") as handle:
        handle.write(re.sub(r'\n_UNICODE_DIR = "[^"]*"', f'\n_UNICODE_DIR = "{RE2_UNICODE}"',
                            text))
    for output, (tool, generator) in RE2_TABLES.items():
        program = DEBIAN_PYTHON if tool == "python3" else tool
        try:
            done = subprocess.run([program, generator], cwd=tree, capture_output=True,
                                  check=False)
        except OSError as err:
            raise Skip(f"cannot run {program}: {err.strerror}") from None
        if done.returncode:
            raise Skip(f"{generator} failed (apt-get install python3-six unicode-data?): "
                       f"{done.stderr.decode(errors='replace').strip()[-200:]}")
        with open(os.path.join(tree, output), "wb") as handle:
            handle.write(done.stdout)


# What a package's tree needs before its build system runs.
PREPARE = {"re2": generate_re2_tables}


def unpack(tarball: str, into: str) -> str:
    """A fresh source tree; returns its top directory."""
    shutil.rmtree(into, ignore_errors=True)
    os.makedirs(into)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise Skip(f"cannot unpack {os.path.basename(tarball)}: {err}") from None
    entries = os.listdir(into)
    return os.path.join(into, entries[0]) if len(entries) == 1 else into


def find_build_system(tree: str, package: str = "") -> tuple[str, str]:
    """(directory, build file): the shallowest directory with a file of BUILD_SYSTEMS, the best
    such file there. Most tarballs have it at the top; some (expat's) in a subdirectory; a
    package in RECIPES says which file to use."""
    if package in RECIPES:
        subdirectory, build_file = RECIPES[package]
        return os.path.join(tree, subdirectory) if subdirectory else tree, build_file
    found = []
    for directory, subdirs, files in os.walk(tree):
        depth = 0 if directory == tree else os.path.relpath(directory, tree).count(os.sep) + 1
        if depth == SEARCH_DEPTH:
            subdirs.clear()
        subdirs.sort()
        found += [(depth, list(BUILD_SYSTEMS).index(name), directory, name)
                  for name in files if name in BUILD_SYSTEMS]
    if not found:
        raise Skip(f"no {', '.join(BUILD_SYSTEMS)} within {SEARCH_DEPTH} levels of the tarball's "
                   "top")
    _, _, directory, name = min(found)
    return directory, name


def build_steps(build_file: str, jobs: int, package: str = "") -> list[tuple[str, list[str]]]:
    """(phase, command) steps that build a tree the way a user would with CC=llmcc."""
    steps = []
    for phase, cmd in {**BUILD_SYSTEMS, **RECIPE_SYSTEMS}[build_file]:
        if phase == "configuring":
            cmd = (*cmd, *CONFIGURE_OPTIONS.get(package, ()))
        steps.append((phase, [arg.format(jobs=jobs) for arg in cmd]))
    return steps


def run_step(cmd: list[str], cwd: str, env: dict[str, str], log: IO,
             tick: Callable[[], None]) -> int:
    """Run one step in its own process group, calling `tick()` about once a second; Ctrl-C or
    running past STEP_TIMEOUT kills the whole group (make's children too)."""
    deadline = time.monotonic() + STEP_TIMEOUT
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as err:
        raise Skip(f"cannot run {cmd[0]}: {err.strerror} (scripts/setup.sh installs it)") from None
    try:
        while True:
            try:
                return proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise Skip(f"`{' '.join(cmd)}` ran past {STEP_TIMEOUT} s") from None
                tick()
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def build(package: str, work: str, environ: dict[str, str], status: Callable[[str], None],
          retry: bool = False) -> dict:
    """Build one package in record mode unless a marker says it was; returns the marker.
    `status(text)` is told what is going on."""
    records = os.path.join(work, "records", package)
    marker = read_marker(records)
    if marker is not None and not (retry and "skipped" in marker):
        return marker
    shutil.rmtree(records, ignore_errors=True)  # a half or skipped build starts afresh
    env = {**environ, "CC": "llmcc", "CXX": "llmcc++", "CFLAGS": "-Oz", "CXXFLAGS": "-Oz",
           "LLMCC_ADVISOR": "none", "LLMCC_CANDIDATES": "0",
           "FORCE_UNSAFE_CONFIGURE": "1",  # GNU tar, coreutils: configure refuses root otherwise
           "LLMCC_CACHE_DIR": os.path.join(work, "cache")}
    log_path = os.path.join(work, "logs", package + ".log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    marker = {"package": package, "split": split_of(package)}
    started, phase = time.monotonic(), "fetching"

    def tick() -> None:
        text = f"{phase}... {time.monotonic() - started:.0f} s"
        if phase == BUILDING:
            text += f", {len(glob.glob(os.path.join(records, '*.bc')))} TUs recorded"
        status(text)

    try:
        tick()
        tarball = fetch(package, os.path.join(work, "downloads"))
        phase = "unpacking"
        tick()
        root, build_file = find_build_system(unpack(tarball, os.path.join(work, "trees", package)),
                                             package)
        if package in PREPARE:
            PREPARE[package](root)
        with open(log_path, "w") as log:
            for phase, cmd in build_steps(build_file, os.cpu_count() or 2, package):
                tick()
                code = run_step(cmd, root, {**env, "LLMCC_RECORD": records} if phase == BUILDING
                                else env, log, tick)
                if code and phase != BUILDING:
                    raise Skip(f"{phase} failed: `{' '.join(cmd)}` exited {code} "
                               f"(see {log_path})")
                if code:  # make -k: what did build is kept
                    marker["partial"] = f"`{' '.join(cmd)}` exited {code} (see {log_path})"
    except (Skip, FetchFailed) as err:
        marker["skipped"] = str(err)
    except (OSError, subprocess.SubprocessError) as err:
        marker["skipped"] = f"{phase}: {err}"
    marker["tus"] = len(glob.glob(os.path.join(records, "*.bc")))
    if marker["tus"] == 0 and "skipped" not in marker:
        marker["skipped"] = "no TU was recorded: " + marker.pop(
            "partial", "nothing compiled at -Oz through llmcc")
    write_marker(records, marker)
    shutil.rmtree(os.path.join(work, "trees", package), ignore_errors=True)
    return marker


def by_split(packages) -> list[str]:
    """Train packages first, then validation, then test: the order labels are most useful in."""
    return sorted(packages, key=lambda p: (OWNER_ORDER.index(split_of(p)), p))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=os.path.expanduser("~/.cache/llmcc-corpus"))
    parser.add_argument("--retry-skipped", action="store_true",
                        help="build again the packages an earlier run skipped")
    parser.add_argument("--list", action="store_true",
                        help="print the allowlist, train packages first, and exit")
    parser.add_argument("packages", nargs="*", default=list(ALLOWLIST))
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(by_split(ALLOWLIST)))
        return 0
    outside = [package for package in args.packages if package not in ALLOWLIST]
    if outside:
        parser.error(f"not in the training allowlist: {' '.join(outside)}")
    line = StatusLine()
    for n, package in enumerate(args.packages, 1):
        label = f"[{n}/{len(args.packages)}] {package}"
        started = time.monotonic()
        marker = build(package, args.work, dict(os.environ),
                       lambda text, label=label: line.show(f"{label}: {text}"), args.retry_skipped)
        outcome = marker.get("skipped") or f"{marker['tus']} TUs"
        line.finish(f"{label}: {outcome} ({time.monotonic() - started:.0f} s)")
    data = write_manifest(args.work, line.show)
    line.finish(f"wrote {os.path.join(args.work, 'dataset.json')}")
    print(table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())

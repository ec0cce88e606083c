"""Shared fixtures: the real clang-19, the installed llmcc commands, an isolated environment,
and the helpers that build real projects (Debian sources, object sizes, the llmcc log)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from llmcc import events
from llmcc.objfile import read_object
from llmcc.train import debian

LLVM_BIN = "/usr/lib/llvm-19/bin"

# A small TU with a header, data, rodata, a warning (-Wall: unused variable) and a loop: the
# unit most intercept and fault tests compile.
SIZE_H = """#ifndef SIZE_H
#define SIZE_H
#define SCALE 3
struct point { int x, y; };
static inline int dot(struct point a, struct point b) { return a.x * b.x + a.y * b.y; }
#endif
"""

SIZE_C = """#include <string.h>
#include "size.h"
int counter;
const char banner[] = "llmcc test unit";
static int helper(int x) { return x * SCALE + 1; }
int work(int n) {
    int s = 0;
    int unused;
    for (int i = 0; i < n; i++) s += helper(i);
    return s;
}
int norm(const struct point *p, int n) {
    int total = 0;
    for (int i = 0; i < n; i++) total += dot(p[i], p[i]);
    return total + (int)strlen(banner) + counter;
}
void fill(int *out, int n) { for (int i = 0; i < n; i++) out[i] = work(i) - norm(0, 0); }
"""

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(name: str) -> str:
    """An installed console script, preferring the one beside the running interpreter."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    found = beside if os.path.exists(beside) else shutil.which(name)
    if not found:
        pytest.exit(f"{name} is not installed: run `pip install .[test]` first", returncode=2)
    return found


@pytest.fixture(scope="session", autouse=True)
def session_runtime_dir():
    """A runtime directory for the whole session (XDG_RUNTIME_DIR), so the fork servers the
    llmcc commands start (llmcc.forkserver) are the session's, stopped when it ends, never the
    user's; a test that needs its own asks for `xdg`."""
    import tempfile

    directory = tempfile.mkdtemp(prefix="llmcc-test-", dir="/tmp")
    before = os.environ.get("XDG_RUNTIME_DIR")
    os.environ["XDG_RUNTIME_DIR"] = directory
    yield directory
    if before is None:
        del os.environ["XDG_RUNTIME_DIR"]
    else:
        os.environ["XDG_RUNTIME_DIR"] = before
    _kill_under(directory)


def _kill_under(directory: str) -> None:
    """Kill every process whose command line names something in `directory`, and remove it."""
    import contextlib

    import psutil

    leftover = processes_under(directory)
    for process in leftover:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(leftover, timeout=5)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def clang() -> str:
    path = shutil.which("clang-19") or os.path.join(LLVM_BIN, "clang")
    if not os.path.exists(path):
        pytest.exit("clang-19 is missing: apt-get install clang-19 llvm-19", returncode=2)
    return path


@pytest.fixture(scope="session")
def clangxx(clang: str) -> str:
    return os.path.join(os.path.dirname(clang), os.path.basename(clang).replace("clang", "clang++"))


@pytest.fixture(scope="session")
def llmcc() -> str:
    return _command("llmcc")


@pytest.fixture(scope="session")
def llmccxx() -> str:
    return _command("llmcc++")


@pytest.fixture(scope="session")
def llmcc_ctl() -> str:
    return _command("llmcc-ctl")


@pytest.fixture
def env(tmp_path, clang) -> dict[str, str]:
    """Environment for one test: its own cache, config and log, the real clang pinned."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCC_", "CCACHE_"))}
    environ.update(
        LLMCC_CACHE_DIR=str(tmp_path / "cache"),
        LLMCC_CONFIG=str(tmp_path / "config.toml"),
        LLMCC_LOG=str(tmp_path / "llmcc.log"),
        LLMCC_CLANG=clang,
        PATH=os.path.dirname(sys.executable) + os.pathsep + environ.get("PATH", ""),
    )
    return environ


@pytest.fixture
def package_copy(tmp_path, env) -> Path:
    """A private copy of the llmcc package, imported first by the llmcc commands (PYTHONPATH),
    so its `advisor/popular.json` can be replaced or damaged as an installation could be."""
    import llmcc

    copy = tmp_path / "site" / "llmcc"
    shutil.copytree(os.path.dirname(llmcc.__file__), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env["PYTHONPATH"] = str(copy.parent)
    return copy


def restore_default_signals() -> None:
    """A terminal job hears Ctrl-C; a test run started in the background (`cmd &` from a
    script, as CI may do) inherits SIGINT ignored, so put back what a terminal would give (a
    `preexec_fn` for the processes a test interrupts)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(cmd: list[str], cwd, env: dict[str, str] | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a command and capture bytes, for byte-for-byte comparisons."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, input=input, check=False)


def read_log(path: str) -> list[dict]:
    """The lines an LLMCC_LOG file holds so far; none if nothing was logged yet."""
    try:
        with open(path) as handle:
            return [json.loads(line) for line in handle]
    except FileNotFoundError:
        return []


def log_events(env: dict[str, str]) -> list[dict]:
    """The LLMCC_LOG lines written so far in this test's environment."""
    return read_log(env["LLMCC_LOG"])


def log_outcomes(env: dict[str, str]) -> list[str]:
    return [event["outcome"] for event in log_events(env)]


def compile_outputs(program: str, args: list[str], cwd, env: dict[str, str],
                    outputs: list[str]) -> tuple[int, bytes, dict[str, bytes | None]]:
    """Run one compile; (rc, stderr, {output: bytes or None}), the outputs removed after."""
    done = run([program, *args], cwd=cwd, env=env)
    files = {}
    for name in outputs:
        path = cwd / name
        files[name] = path.read_bytes() if path.exists() else None
        path.unlink(missing_ok=True)
    return done.returncode, done.stderr, files


# --- real projects: Debian sources, their builds and their objects ---------------------------

INTERCEPTED = frozenset({events.MISS, events.HIT, events.DIRECT_HIT})


def script(path: Path, body: str) -> str:
    """An executable /bin/sh script: a stand-in tool for a test."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def frontend_ir(clang: str, source: Path, bitcode: Path, *flags: str, cwd=None) -> None:
    """The IR llmcc starts from: clang's frontend at -Oz, no LLVM passes (`source` relative to
    `cwd`, if given: the IR names the module after `source` as written)."""
    subprocess.run([clang, "-Oz", *flags, "-c", "-emit-llvm", "-Xclang", "-disable-llvm-passes",
                    str(source), "-o", str(bitcode)], check=True, cwd=cwd)


def sample_lists(count: int) -> list:
    """The first `count` popular lists a compile may run (none with a pass of NEVER_RUN), then
    random lists of the vocabulary (seeded): `2 * count` lists in all."""
    import random

    from llmcc import passes
    from llmcc.advisor.popular import PopularAdvisor

    popular = list(PopularAdvisor.load().lists[:count])
    rng = random.Random(19)
    return popular + [passes.random_list(rng) for _ in range(2 * count - len(popular))]


def need_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def run_ok(cmd: list[str], cwd, env: dict[str, str]) -> bytes:
    """Run a build step that must succeed; on failure show what it said."""
    done = run(cmd, cwd=cwd, env=env)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited {done.returncode} in {cwd}\n"
        f"--- stdout ---\n{done.stdout.decode(errors='replace')[-4000:]}\n"
        f"--- stderr ---\n{done.stderr.decode(errors='replace')[-4000:]}")
    return done.stdout


def collect_objects(root: Path, patterns: tuple[str, ...] = ("*.o",)) -> dict[str, bytes]:
    """Every object file under `root`, by path relative to it."""
    found: dict[str, bytes] = {}
    for pattern in patterns:
        for path in root.rglob(pattern):
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def object_size(blob: bytes) -> int:
    return read_object(blob).size


def intercepted_outputs(log_path: str) -> dict[str, str]:
    """Output path -> outcome, for the compiles llmcc itself produced."""
    return {e["output"]: e["outcome"] for e in read_log(log_path) if e["outcome"] in INTERCEPTED}


def assert_no_larger(ours: dict[str, bytes], plain: dict[str, bytes]) -> tuple[int, int]:
    """Same objects as plain clang, none larger; returns (our total, plain total)."""
    assert sorted(ours) == sorted(plain)
    larger = {name: (object_size(ours[name]), object_size(plain[name])) for name in plain
              if object_size(ours[name]) > object_size(plain[name])}
    assert not larger, f"objects larger than plain clang's (llmcc, clang): {larger}"
    return sum(map(object_size, ours.values())), sum(map(object_size, plain.values()))


def report_sizes(what: str, ours: int, plain: int) -> None:
    saved = 100.0 * (plain - ours) / plain
    print(f"\n{what}: llmcc {ours} bytes, clang-19 {plain} bytes (text+data), "
          f"{saved:.2f}% saved")


def _sources_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmcc-tests" / "sources"


@pytest.fixture(scope="session")
def debian_source():
    """`debian_source(package)` -> the package's upstream tarball, downloaded once and kept."""

    def fetch(package: str) -> Path:
        try:
            return Path(debian.fetch(package, str(_sources_dir())))
        except debian.FetchFailed as err:
            pytest.fail(str(err))

    return fetch


def extract(tarball: Path, dest: Path) -> Path:
    """Unpack an upstream tarball into `dest`; returns its single top-level directory."""
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse paths outside dest
            archive.extractall(dest, filter="data")
        else:
            archive.extractall(dest)
    (top,) = dest.iterdir()
    return top


def zlib_tested_with(llmcc: str, clang: str, debian_source, tmp_path: Path,
                     env: dict[str, str]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """zlib built with CC=llmcc and its `make test` passing, every object from llmcc (not a
    fallback to clang), and the same build with plain clang: (llmcc's objects, clang's)."""
    make = need_tool("make")
    tarball = debian_source("zlib")
    ours = extract(tarball, tmp_path / "llmcc")
    plain = extract(tarball, tmp_path / "plain")
    run_ok(["./configure"], ours, {**env, "CC": llmcc, "CFLAGS": "-Oz"})
    run_ok([make, "-j2"], ours, env)
    test_output = run_ok([make, "test"], ours, env)
    assert b"*** zlib test OK ***" in test_output
    assert b"*** zlib 64-bit test OK ***" in test_output
    run_ok(["./configure"], plain, {**env, "CC": clang, "CFLAGS": "-Oz"})
    run_ok([make, "-j2"], plain, env)

    patterns = ("*.o", "*.lo")  # zlib names its shared-library (PIC) objects *.lo
    ours_objects, plain_objects = collect_objects(ours, patterns), collect_objects(plain, patterns)
    assert "deflate.lo" in plain_objects and "inflate.o" in plain_objects
    intercepted = intercepted_outputs(env["LLMCC_LOG"])  # *.lo are built as objs/*.o
    built_as = {name: "objs/" + name[:-3] + ".o" if name.endswith(".lo") else name
                for name in ours_objects}
    missing = sorted(name for name, output in built_as.items() if output not in intercepted)
    assert not missing, f"compiled by plain clang, not llmcc: {missing}"
    return ours_objects, plain_objects


# --- per-user model servers ----------------------------------------------------------------------

def processes_under(directory: str) -> list:
    """Processes whose command line names something in `directory`."""
    import psutil

    return [process for process in psutil.process_iter(["cmdline"])
            if any(directory in arg for arg in process.info["cmdline"] or ())]


def model_servers_under(directory: str) -> list:
    """The model servers among processes_under(directory) (not the fork servers compiles
    start beside them)."""
    return [process for process in processes_under(directory)
            if "llmcc.advisor.server" in process.info["cmdline"]]


def model_server_status(status: str) -> str:
    """What `llmcc-ctl server status` printed about model servers (not fork servers)."""
    return "".join(line for line in status.splitlines(keepends=True)
                   if "fork server" not in line and "/forkserver-" not in line)


@pytest.fixture
def xdg(monkeypatch) -> str:
    """A runtime directory of the test's own for per-user model servers (short: a socket path
    has at most 107 bytes), in this process's environment; every server started in it is
    killed afterwards."""
    import tempfile

    directory = tempfile.mkdtemp(prefix="llmcc-test-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", directory)
    yield directory
    _kill_under(directory)


# --- the advisor a real project is built with ----------------------------------------------------

@pytest.fixture(params=["popular", "model", "forest"])
def advisor(request, env: dict[str, str]) -> str:
    """Builds a real project with each advisor that chooses for itself: the popular lists, the
    shipped model (asked through the per-user server in a runtime directory of the test's own)
    and the shipped forest. Each chooses among vetted lists, but not the same ones: each choice
    must keep the code correct."""
    env["LLMCC_ADVISOR"] = request.param
    if request.param == "model":
        env["XDG_RUNTIME_DIR"] = request.getfixturevalue("xdg")
    return request.param


def assert_advised_by(env: dict[str, str], advisor: str) -> None:
    """Every TU llmcc decided was decided by `advisor` (its identity in the log), none after
    the advisor failed (which would fall back to other lists)."""
    decided = [e for e in log_events(env) if e["outcome"] == events.MISS]
    assert decided
    wrong = {e["output"]: (e["advisor"], e.get("advisor_failure")) for e in decided
             if not e["advisor"].startswith(advisor + ":") or "advisor_failure" in e}
    assert not wrong, f"decided by another advisor, or after the {advisor} advisor failed: {wrong}"

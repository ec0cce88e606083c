"""Shared fixtures: the real clang-19, the installed llmcc commands, an isolated environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

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


def run(cmd: list[str], cwd, env: dict[str, str] | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a command and capture bytes, for byte-for-byte comparisons."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, input=input, check=False)


def log_events(env: dict[str, str]) -> list[dict]:
    """The LLMCC_LOG lines written so far in this test's environment."""
    try:
        with open(env["LLMCC_LOG"]) as handle:
            return [json.loads(line) for line in handle]
    except FileNotFoundError:
        return []


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

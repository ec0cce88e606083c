"""End to end: llmcc's Bazel toolchain (shims/bazel) in workspaces a real Bazel builds offline.

Bazel 2.1.0 comes from npm (`@bazel/bazel-linux_x64`, the one registry here that has a Bazel
binary) into ~/.cache/llmcc-bazel, where `scripts/setup.sh test` installs it; the tests
install it themselves when it is missing and skip only when npm cannot. Bazel 2.1 wants to
download `rules_cc`, `rules_java` and, for `bazel test`, its coverage tools: the tests give it
tiny local stand-ins instead (--override_repository), so nothing is downloaded.

Each test has its own workspace and output base (its own Bazel server, action cache and
external repositories) in tmp, and shuts its servers down at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import (
    INTERCEPTED,
    REPO,
    SIZE_C,
    SIZE_H,
    assert_no_larger,
    collect_objects,
    extract,
    log_events,
    log_outcomes,
    read_log,
    report_sizes,
    run,
)

BAZEL_NPM_PACKAGE = "@bazel/bazel-linux_x64@2.1.0"
BAZEL_BINARY = "node_modules/@bazel/bazel-linux_x64/bazel-2.1.0-linux-x86_64"
IDLE_SECONDS = 600  # a server a crashed test leaves behind still goes away by itself
OPT_BIN = "bazel-out/k8-opt/bin/"  # where `-c opt` puts outputs, as llmcc's log names them

# Local stand-ins for the repositories Bazel 2.1 would download: the rules only re-export
# Bazel's native ones; coverage tools are never run by these tests.
_NATIVE = "def {0}(**kwargs):\n    native.{0}(**kwargs)\n"
STUBS = {
    "rules_cc": {
        "cc/defs.bzl": "".join(_NATIVE.format(rule) for rule in (
            "cc_binary", "cc_library", "cc_test", "cc_toolchain", "cc_toolchain_suite")),
        "cc/BUILD": "",
    },
    "rules_java": {
        "java/defs.bzl": "".join(_NATIVE.format(rule) for rule in (
            "java_binary", "java_import", "java_runtime", "java_toolchain")),
        "java/BUILD": "",
    },
    "remote_coverage_tools": {
        "BUILD": 'package(default_visibility = ["//visibility:public"])\n'
                 'filegroup(name = "coverage_report_generator")\n'
                 'filegroup(name = "lcov_merger")\n',
    },
}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _bazel_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llmcc-bazel"


@pytest.fixture(scope="session")
def bazel_binary() -> str:
    """Bazel 2.1.0, installed from npm the way scripts/setup.sh does if it is not there yet."""
    home = _bazel_home()
    binary = home / BAZEL_BINARY
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"Bazel cannot be installed: no npm to install {BAZEL_NPM_PACKAGE}")
        home.mkdir(parents=True, exist_ok=True)
        done = run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(home),
                    BAZEL_NPM_PACKAGE], cwd=home)
        if done.returncode != 0 or not binary.exists():
            pytest.skip(f"Bazel cannot be installed: npm install {BAZEL_NPM_PACKAGE} failed: "
                        f"{done.stderr.decode(errors='replace')[-500:]}")
    return str(binary)


@pytest.fixture(scope="session")
def stubs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bazel-stubs")
    for name, files in STUBS.items():
        _write(root / name, {"WORKSPACE": "", "BUILD": "", **files})
    return root


class Bazel:
    """`bazel` in one workspace with one output base, in a near-empty action environment."""

    def __init__(self, binary: str, workspace: Path, output_base: Path, stubs: Path) -> None:
        self.binary, self.workspace, self.output_base = binary, workspace, output_base
        self.overrides = [f"--override_repository={name}={stubs / name}" for name in STUBS]

    def __call__(self, command: str, *args: str, ok: bool = True) -> str:
        """Run one command; its output (Bazel writes everything to stderr)."""
        startup = ["--nohome_rc", "--nosystem_rc", f"--output_base={self.output_base}",
                   f"--max_idle_secs={IDLE_SECONDS}"]
        flags = {"shutdown": [], "sync": self.overrides, "clean": self.overrides}.get(
            command, [*self.overrides, "--incompatible_strict_action_env", "--test_output=errors",
                      "--symlink_prefix=/"])  # no bazel-* links: another output base reads them
        cmd = [self.binary, *startup, command, *flags, *args]
        done = subprocess.run(cmd, cwd=self.workspace, capture_output=True, timeout=1800,
                              check=False)
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0 or not ok, (
            f"bazel {command} {' '.join(args)} exited {done.returncode}:\n{output[-6000:]}")
        return output

    def objects(self) -> dict[str, bytes]:
        """The objects of the last `-c opt` build, by their path under bazel-bin."""
        bin_dir = self.output_base / "execroot" / "__main__" / OPT_BIN
        return {name: blob for name, blob in collect_objects(bin_dir).items()
                if "_objs" in Path(name).parts}


@pytest.fixture
def bazel(bazel_binary, stubs, tmp_path):
    """`bazel(workspace, name)`: a Bazel with the output base tmp/name; all shut down after."""
    made: list[Bazel] = []

    def make(workspace: Path, name: str) -> Bazel:
        made.append(Bazel(bazel_binary, workspace, tmp_path / name, stubs))
        return made[-1]

    yield make
    for each in made:
        each("shutdown", ok=False)


def _llmcc_command() -> str:
    return os.path.join(os.path.dirname(sys.executable), "llmcc")


def _workspace(root: Path, files: dict[str, str], llmcc: str, cache_dir: Path,
               registration: str) -> Path:
    """A workspace that uses llmcc's toolchain the way a user's does (shims/bazel/BUILD,
    configure.bzl); `files` are its sources, `registration` its .bazelrc."""
    _write(root, {
        "WORKSPACE": f"""\
local_repository(name = "llmcc", path = "{REPO}/shims/bazel")
load("@llmcc//:configure.bzl", "llmcc_configure")
llmcc_configure(llmcc = "{llmcc}", cache_dir = "{cache_dir}")
""",
        ".bazelrc": registration,
        **files,
    })
    return root


CROSSTOOL = "build --crosstool_top=@llmcc//:toolchain\n"
RESOLUTION = ("build --incompatible_enable_cc_toolchain_resolution\n"
              "build --extra_toolchains=@llmcc//:cc_toolchain\n")


def _intercepted(log: Path) -> list[dict]:
    """The log events of the compiles llmcc did, each with its object's path under bazel-bin."""
    return [{**event, "object": event["output"].removeprefix(OPT_BIN)}
            for event in read_log(str(log)) if event["outcome"] in INTERCEPTED]


def _quiet(output: str) -> bool:
    """No action printed anything of llmcc's (Bazel shows it as `INFO: From Compiling ...`)."""
    return "llmcc:" not in output


# --- what the toolchain's script asks of llmcc: no cache, quietly --------------------------

def test_bazel_script_turns_the_cache_off_and_llmcc_compiles_quietly_without_it(
        tmp_path, env, llmcc):
    (tmp_path / "size.h").write_text(SIZE_H)
    (tmp_path / "size.c").write_text(SIZE_C)
    compile_args = [llmcc, "-Oz", "-c", "size.c", "-o", "size.o"]
    cached = run(compile_args, tmp_path, env)
    assert cached.returncode == 0 and log_outcomes(env) == ["miss"], log_events(env)
    with_cache = (tmp_path / "size.o").read_bytes()
    # A cache dir that cannot be made, as in Bazel's read-only sandbox.
    unusable = {**env, "LLMCC_CACHE_DIR": "/proc/llmcc-cache"}
    warned = run(compile_args, tmp_path, unusable)
    assert warned.returncode == 0  # outside Bazel, a warning:
    assert b"warning: cannot write the cache in /proc/llmcc-cache" in warned.stderr
    quiet = run(compile_args, tmp_path, {**unusable, "LLMCC_CACHE": "0"})
    assert quiet.returncode == 0 and quiet.stderr == b""
    assert (tmp_path / "size.o").read_bytes() == with_cache
    assert log_outcomes(env) == ["miss", "miss", "miss"]  # no cache: decided afresh, the same


# --- a small workspace: a library, a binary and a test, in C and in C++ ---------------------

SAMPLE = {
    "c/BUILD": """\
cc_library(name = "words", srcs = ["words.c"], hdrs = ["words.h"])
cc_binary(name = "count", srcs = ["count.c"], deps = [":words"])
cc_test(name = "words_test", srcs = ["words_test.c"], deps = [":words"])
""",
    "c/words.h": """\
const char *number_name(int n);
unsigned checksum(const char *text);
int count_vowels(const char *text);
""",
    "c/words.c": """\
#include "c/words.h"
static const char *const names[] = {"zero", "one", "two", "three", "four", "five"};
const char *number_name(int n) { return n >= 0 && n < 6 ? names[n] : "many"; }
unsigned checksum(const char *text) {
    unsigned sum = 0;
    for (; *text; text++) sum = sum * 31 + (unsigned char)*text;
    return sum;
}
int count_vowels(const char *text) {
    int count = 0;
    for (; *text; text++) {
        switch (*text) {
        case 'a': case 'e': case 'i': case 'o': case 'u': count++; break;
        default: break;
        }
    }
    return count;
}
""",
    "c/count.c": """\
#include <stdio.h>
#include "c/words.h"
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        printf("%s: %s vowels, checksum %u\\n", argv[i], number_name(count_vowels(argv[i])),
               checksum(argv[i]));
    return 0;
}
""",
    "c/words_test.c": """\
#include <string.h>
#include "c/words.h"
/* -c opt defines NDEBUG: check by hand, not with assert. */
int main(void) {
    if (count_vowels("education") != 5) return 1;
    if (strcmp(number_name(3), "three") != 0 || strcmp(number_name(9), "many") != 0) return 2;
    if (checksum("") != 0 || checksum("ab") != 97u * 31 + 98) return 3;
    return 0;
}
""",
    "cpp/BUILD": """\
cc_library(name = "shapes", srcs = ["shapes.cc"], hdrs = ["shapes.h"])
cc_binary(name = "areas", srcs = ["areas.cc"], deps = [":shapes"])
cc_test(name = "shapes_test", srcs = ["shapes_test.cc"], deps = [":shapes"])
""",
    "cpp/shapes.h": """\
#include <memory>
#include <string>
#include <vector>
struct Shape {
    virtual ~Shape() = default;
    virtual double area() const = 0;
    virtual std::string name() const = 0;
};
using Shapes = std::vector<std::unique_ptr<Shape>>;
Shapes make_shapes(int n);
double total_area(const Shapes &shapes);
std::string describe(const Shapes &shapes);
""",
    "cpp/shapes.cc": """\
#include "cpp/shapes.h"
#include <numeric>
namespace {
struct Square : Shape {
    explicit Square(double side) : side(side) {}
    double area() const override { return side * side; }
    std::string name() const override { return "square"; }
    double side;
};
struct Triangle : Shape {
    Triangle(double base, double height) : base(base), height(height) {}
    double area() const override { return base * height / 2; }
    std::string name() const override { return "triangle"; }
    double base, height;
};
}  // namespace
Shapes make_shapes(int n) {
    Shapes shapes;
    for (int i = 1; i <= n; i++) {
        if (i % 2) shapes.push_back(std::make_unique<Square>(i));
        else shapes.push_back(std::make_unique<Triangle>(i, 2 * i));
    }
    return shapes;
}
double total_area(const Shapes &shapes) {
    return std::accumulate(shapes.begin(), shapes.end(), 0.0,
                           [](double sum, const auto &shape) { return sum + shape->area(); });
}
std::string describe(const Shapes &shapes) {
    std::string text;
    for (const auto &shape : shapes) text += (text.empty() ? "" : ",") + shape->name();
    return text;
}
""",
    "cpp/areas.cc": """\
#include <cstdlib>
#include <iostream>
#include "cpp/shapes.h"
int main(int argc, char **argv) {
    Shapes shapes = make_shapes(argc > 1 ? std::atoi(argv[1]) : 4);
    std::cout << describe(shapes) << ": " << total_area(shapes) << "\\n";
}
""",
    "cpp/shapes_test.cc": """\
#include "cpp/shapes.h"
int main() {
    Shapes shapes = make_shapes(4);  // squares 1 and 9, triangles 4 and 16
    if (total_area(shapes) != 30.0) return 1;
    if (describe(shapes) != "square,triangle,square,triangle") return 2;
    return make_shapes(0).empty() ? 0 : 3;
}
""",
}

SAMPLE_SOURCES = 6


def _test_through_llmcc(build, log: Path, cache: Path, tmp_path: Path) -> tuple[dict, list]:
    """`bazel test -c opt //...` with llmcc: both tests pass, quietly, and every object
    came from llmcc; (objects, llmcc's events for them)."""
    output = build("test", "-c", "opt", "//...", f"--action_env=LLMCC_LOG={log}",
                   f"--sandbox_writable_path={cache}", f"--sandbox_writable_path={tmp_path}")
    assert "2 tests pass" in output
    assert _quiet(output)
    objects, intercepted = build.objects(), _intercepted(log)
    assert sorted(e["object"] for e in intercepted) == sorted(objects), \
        "an object did not come from llmcc"
    return objects, intercepted


@pytest.mark.slow
def test_bazel_test_passes_through_llmcc_and_objects_are_never_larger(tmp_path, bazel):
    cache, log = tmp_path / "cache", tmp_path / "llmcc.log"
    workspace = _workspace(tmp_path / "ws", SAMPLE, _llmcc_command(), cache, CROSSTOOL)
    ours = bazel(workspace, "ours")
    ours_objects, intercepted = _test_through_llmcc(ours, log, cache, tmp_path)
    assert len(ours_objects) == SAMPLE_SOURCES
    assert {event["outcome"] for event in intercepted} == {"miss"}

    # The same build with llmcc switched off: the same toolchain, flags and clang.
    logged = len(read_log(str(log)))
    plain = bazel(workspace, "plain")
    plain("test", "-c", "opt", "//...", "--action_env=LLMCC_DISABLE=1",
          f"--action_env=LLMCC_LOG={log}")
    assert len(read_log(str(log))) == logged, "the plain build went through llmcc"
    total, plain_total = assert_no_larger(ours_objects, plain.objects())
    report_sizes(f"Bazel sample ({SAMPLE_SOURCES} objects, C and C++, -c opt = -Oz)",
                 total, plain_total)


ONE_FILE = {"BUILD": 'cc_binary(name = "words", srcs = ["words.c", "words.h"])\n',
            "words.c": SAMPLE["c/words.c"].replace("c/words.h", "words.h") +
            "int main(int argc, char **argv) { return count_vowels(argv[0]) + argc; }\n",
            "words.h": SAMPLE["c/words.h"]}


@pytest.mark.slow
def test_bazel_action_cache_hits_until_llmcc_id_changes(tmp_path, bazel):
    # llmcc and an llmcc-ctl whose `id` can change, as after an upgrade of llmcc or its data.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llmcc").symlink_to(_llmcc_command())
    ctl = bin_dir / "llmcc-ctl"
    real_ctl = _llmcc_command() + "-ctl"
    ctl.symlink_to(real_ctl)
    log, disk = tmp_path / "llmcc.log", tmp_path / "disk-cache"
    workspace = _workspace(tmp_path / "ws", ONE_FILE, str(bin_dir / "llmcc"), tmp_path / "cache",
                           CROSSTOOL)
    build = bazel(workspace, "out")
    flags = ["-c", "opt", "//...", f"--disk_cache={disk}", f"--action_env=LLMCC_LOG={log}"]

    build("build", *flags)
    first = build.objects()
    assert len(_intercepted(log)) == 1
    build("clean")
    build("build", *flags)
    assert build.objects() == first
    assert len(read_log(str(log))) == 2, "the disk cache missed: llmcc compiled again"

    ctl.unlink()
    ctl.write_text(f'#!/bin/sh\n[ "$1" = id ] && echo "$({real_ctl} id) upgraded" && exit\n'
                   f'exec {real_ctl} "$@"\n')
    ctl.chmod(0o755)
    build("sync", "--configure")  # what configure.bzl says to run after upgrading llmcc
    wrapper = (tmp_path / "out" / "external" / "llmcc_config" / "llmcc").read_text()
    assert "upgraded" in wrapper
    build("build", *flags)
    assert len(_intercepted(log)) == 2, "a new llmcc id did not make Bazel compile again"


@pytest.mark.slow
def test_bazel_sandbox_with_read_only_cache_compiles_quietly_without_it(tmp_path, bazel):
    # Bazel's sandbox can write to /tmp: the read-only cache must lie elsewhere.
    cache = Path(tempfile.mkdtemp(prefix="read-only-cache-", dir=_bazel_home()))
    try:
        log = tmp_path / "llmcc.log"
        workspace = _workspace(tmp_path / "ws", ONE_FILE, _llmcc_command(), cache, CROSSTOOL)
        build = bazel(workspace, "out")
        output = build("build", "-c", "opt", "//...", f"--action_env=LLMCC_LOG={log}",
                       f"--sandbox_writable_path={tmp_path}")
        if "linux-sandbox" not in output:
            pytest.skip("Bazel's linux-sandbox is not available here (no user namespaces), "
                        "and its fallback leaves every directory writable")
        assert _quiet(output)
        assert [event["outcome"] for event in read_log(str(log))] == ["miss", "passthrough"]
        assert os.listdir(cache) == [], "llmcc wrote to a cache the sandbox made read-only"
    finally:
        shutil.rmtree(cache)


# --- a real project: zlib with a BUILD file, its own test programs under `bazel test` --------

ZLIB = {
    "BUILD": """\
# What zlib's ./configure finds on Linux, as flags.
COPTS = ["-D_LARGEFILE64_SOURCE=1", "-DHAVE_HIDDEN", "-DHAVE_UNISTD_H", "-DHAVE_STDARG_H"]
cc_library(
    name = "z",
    srcs = glob(["*.c", "*.h"], exclude = ["zlib.h", "zconf.h"]),
    hdrs = ["zlib.h", "zconf.h"],
    copts = COPTS,
)
cc_test(name = "example", srcs = ["test/example.c"], copts = COPTS, deps = [":z"])
cc_binary(name = "minigzip", srcs = ["test/minigzip.c"], copts = COPTS, deps = [":z"])
sh_test(
    name = "minigzip_test",
    srcs = ["minigzip_test.sh"],
    args = ["$(location :minigzip)", "$(location zlib.h)"],
    data = [":minigzip", "zlib.h"],
)
""",
    # zlib's `make test` pipes text through minigzip and back; this does it with a file.
    "minigzip_test.sh": """\
#!/bin/sh
set -e
"$1" < "$2" > "$TEST_TMPDIR/z.gz"
"$1" -d < "$TEST_TMPDIR/z.gz" > "$TEST_TMPDIR/z"
cmp "$2" "$TEST_TMPDIR/z"
""",
}


@pytest.mark.slow
def test_bazel_builds_zlib_and_its_tests_pass(tmp_path, bazel, debian_source):
    source = extract(debian_source("zlib"), tmp_path / "src")
    cache, log = tmp_path / "cache", tmp_path / "llmcc.log"
    workspace = _workspace(source, ZLIB, _llmcc_command(), cache, RESOLUTION)
    (workspace / "minigzip_test.sh").chmod(0o755)
    build = bazel(workspace, "out")
    objects, intercepted = _test_through_llmcc(build, log, cache, tmp_path)
    assert "_objs/z/deflate.o" in objects and "_objs/example/example.o" in objects
    # llmcc's baseline is clang's own -Oz object, byte for byte (tests/test_intercept.py).
    larger = [e["object"] for e in intercepted if e["size"] > e["baseline_size"]]
    assert not larger, f"larger than clang's own -Oz: {larger}"
    report_sizes(f"zlib under Bazel ({len(objects)} objects)",
                 sum(e["size"] for e in intercepted), sum(e["baseline_size"] for e in intercepted))

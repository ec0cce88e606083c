"""Differential testing on real projects: each TU built with a pass list drawn for it, then the
project's own test suite.

csmith's programs check what a list computes on random code; a project's suite checks it on
the code people write, with tests written by people who know what it must do (PCRE2's JIT
tests caught `iroutliner`, which 34,080 csmith builds had not). Each build gives every TU one
list of the default advisor's repertoire (the shipped forest's lists a compile may run), drawn
by a seeded hash of the object's path, and uses the object that list made wherever it keeps
the TU's interface (`optimize.Evaluator`'s check), even where it is larger than clang's: a
build tests one list on every TU, not only where llmcc would have kept it. A suite that fails
where plain clang's passed is narrowed down by rebuilding with half of the lists (bisection) to
one TU, confirmed (its list alone fails again, the build without lists passes), and its list is
shortened while the suite still fails; the result, with every step, is in
DIR/<project>/failures.jsonl.

    python -m llmcc.reliability.projects --project pcre2 --builds 8 --out DIR
    python -m llmcc.reliability.projects --out DIR --report
    python -m llmcc.reliability.projects --project zlib --lists FILE --out DIR  # your lists

Each finished build is one line of DIR/<project>/builds.jsonl, so a run that stops resumes.
The build's compiler is `python -m llmcc.reliability.projects cc ...` (a script in DIR), which
hands every call it does not decide (configure's probes, links) to the real clang.
"""

from __future__ import annotations

import argparse
import functools
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from llmcc.passes import PassList, PassListError, never_run, parse, to_text
from llmcc.toolchain import cxx_name

# The compiler's instructions, set by the harness for one build.
CLANG_ENV = "LLMCC_PROJECTS_CLANG"  # the real clang
SEED_ENV = "LLMCC_PROJECTS_SEED"  # draw a list for every TU with this seed
PLAN_ENV = "LLMCC_PROJECTS_PLAN"  # or: a JSON file, object path -> list; other TUs get clang's
LISTS_ENV = "LLMCC_PROJECTS_LISTS"  # a JSON file: the lists a seed draws from
ROOT_ENV = "LLMCC_PROJECTS_ROOT"  # object paths are relative to this directory
LOG_ENV = "LLMCC_PROJECTS_LOG"  # one JSON line per compile decided
CACHE_ENV = "LLMCC_PROJECTS_CACHE"  # objects made, by IR, flags and list

BUILDS, FAILURES, LISTS = "builds.jsonl", "failures.jsonl", "lists.json"
CMAKE_DIR = "_build"  # a CMake project's build directory, inside its tree
CTEST_FAILED = re.compile(r"^\s+\d+ - \S+ \(")  # "  3 - re2_test (Failed)", after ctest's run
STEP_TIMEOUT = 60.0  # one opt or code generation step


@dataclass(frozen=True)
class Project:
    """A Debian source package whose suite runs by `make check` (or `check`) after configure,
    or (`cmake`) by `make test` (ctest) in a CMake build directory; `configure` holds the
    options either one is given. `patched`: built as Debian builds it, its patches applied
    (those that build the tests with Debian's googletest: `apt-get install libgmock-dev`)."""

    package: str
    cflags: str
    configure: tuple[str, ...] = ()
    check: tuple[str, ...] = ("check",)
    cmake: bool = False
    patched: bool = False

    def configure_steps(self, cc: str, cxx: str) -> list[list[str]]:
        if self.cmake:
            return [["cmake", "-S", ".", "-B", CMAKE_DIR, "-G", "Unix Makefiles",
                     "-DCMAKE_BUILD_TYPE=None", f"-DCMAKE_C_COMPILER={cc}",
                     f"-DCMAKE_CXX_COMPILER={cxx}", f"-DCMAKE_C_FLAGS={self.cflags}",
                     f"-DCMAKE_CXX_FLAGS={self.cflags}", *self.configure]]
        return [["./configure", *self.configure]]  # CC, CXX and their flags from the environment

    def make(self, *args: str) -> list[str]:
        return ["make", *(("-C", CMAKE_DIR) if self.cmake else ()), *args]


# Packages whose suites pass built by plain clang-19 here, at the level distributions use or
# at -Oz; PCRE2 with its JIT, as its suite caught iroutliner. Left out, their suites failing
# with plain clang here: jansson's autotools one (its export check compares nm's output),
# google-glog (three tests at -Os -DNDEBUG), leveldb (db_test, which Debian lets fail), sed
# (panic-tests.sh, run as root), libxml2 (its tarball lacks some of runtests' files), m4 (its
# 198.sysval check), byacc (9 of its tests print other messages than it expects); and expat
# (its source in a subdirectory of the tarball), gmp (Debian's tarball lacks doc/Makefile.in),
# gawk (nor doc/gawktexi.in) and cpio (nor doc/cpio.texi), which do not configure or build as
# the harness does, libffi (clang 19 refuses its src/tramp.c: an implicit declaration), npth
# (its tarball 404s on the mirror here), and mbedtls (its ssl and x509parse suites fail with
# plain clang here: test certificates past their dates). Nor build here with plain clang as the
# harness builds them: bc and libsndfile (their builds run makeinfo and autogen, not installed),
# tar (its configure refuses root), sharutils (its gnulib fseeko.c does not know this glibc),
# indent (-Werror, and an implicit declaration), gperf (`register`, an error in C++17), libbsd
# (needs libmd-dev), lzlib (its configure takes CC as an argument only), cmocka (its
# test_exception_handler fails with plain clang here), libdeflate (Debian's 1.14 has no CMake
# build, only a Makefile), libb2 (its configure sets -O3, a level llmcc leaves alone unless
# LLMCC_LEVELS asks), spdlog (Debian's tarball lacks the fmt it bundles), catch2, rapidjson and
# doctest (-Werror meets clang 19's warnings), flatbuffers (its reflection test fails with
# plain clang here); libidn, libconfuse, libfastjson, libsigc++-2.0, pixman, uriparser, re2c,
# yasm, qrencode, libcdio and cxxopts 404 on the mirror, and libucl has no source package.
PROJECTS = {
    "pcre2": Project("pcre2", "-Os", ("--enable-jit",)),
    "xz-utils": Project("xz-utils", "-Oz", ("--disable-shared", "--disable-nls")),
    "zlib": Project("zlib", "-Oz", check=("test",)),
    "libsodium": Project("libsodium", "-Os"),
    "nettle": Project("nettle", "-Os", ("--disable-documentation",)),
    "libpng1.6": Project("libpng1.6", "-Oz"),
    "libtasn1-6": Project("libtasn1-6", "-Os", ("--disable-doc",)),
    "mpfr4": Project("mpfr4", "-Oz"),
    "grep": Project("grep", "-Os", ("--disable-nls",)),
    "gzip": Project("gzip", "-Os"),
    "libyaml": Project("libyaml", "-Oz"),
    "lzo2": Project("lzo2", "-Os"),
    # without its assembly, whose amd64 MPI routines read the upper half of a 32-bit argument
    # register, which the x86-64 ABI leaves undefined: a list whose code leaves it set made
    # t-mpi-bit crash (docs/reliability.md, "libgcrypt's assembly")
    "libgcrypt20": Project("libgcrypt20", "-Os", ("--disable-doc", "--disable-asm")),
    "brotli": Project("brotli", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON",), check=("test",),
                      cmake=True),
    "libjpeg-turbo": Project("libjpeg-turbo", "-Os -DNDEBUG", ("-DWITH_SIMD=0",),
                             check=("test",), cmake=True),
    "json-c": Project("json-c", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON", "-DDISABLE_WERROR=ON"),
                      check=("test",), cmake=True),
    "libonig": Project("libonig", "-Os"),
    "opus": Project("opus", "-Os"),
    "gdbm": Project("gdbm", "-Os", ("--disable-nls",)),
    "popt": Project("popt", "-Os", ("--disable-nls",)),
    "libidn2": Project("libidn2", "-Os", ("--disable-nls", "--disable-doc")),
    "libconfig": Project("libconfig", "-Os"),
    "mawk": Project("mawk", "-Os"),
    "libogg": Project("libogg", "-Os"),
    "libmd": Project("libmd", "-Os"),
    "libgpg-error": Project("libgpg-error", "-Os", ("--disable-doc", "--disable-nls")),
    "diffutils": Project("diffutils", "-Os", ("--disable-nls",)),
    "patch": Project("patch", "-Os"),
    "libassuan": Project("libassuan", "-Os", ("--disable-doc",)),
    "findutils": Project("findutils", "-Os", ("--disable-nls",)),
    "hello": Project("hello", "-Os", ("--disable-nls",)),
    "units": Project("units", "-Os"),
    "pcre3": Project("pcre3", "-Os"),
    "libexif": Project("libexif", "-Os", ("--disable-nls",)),
    "cppunit": Project("cppunit", "-Os", ("--disable-doxygen",)),
    "libsigsegv": Project("libsigsegv", "-Os"),
    "libsamplerate": Project("libsamplerate", "-Os"),
    "libestr": Project("libestr", "-Os"),
    "cunit": Project("cunit", "-Os"),
    "cjson": Project("cjson", "-Os -DNDEBUG", ("-DENABLE_CJSON_TEST=ON",), check=("test",),
                     cmake=True),
    "check": Project("check", "-Os"),
    "speexdsp": Project("speexdsp", "-Os"),
    "libgc": Project("libgc", "-Os"),
    "libsrtp2": Project("libsrtp2", "-Os", check=("runtest",)),
    "file": Project("file", "-Os"),
    "libmspack": Project("libmspack", "-Os"),
    "hunspell": Project("hunspell", "-Os", ("--disable-nls",)),  # C++
    "yajl": Project("yajl", "-Os -DNDEBUG", check=("test",), cmake=True),
    "tiff": Project("tiff", "-Os"),
    "lcms2": Project("lcms2", "-Os"),
    "jimtcl": Project("jimtcl", "-Os", check=("test",)),
    "libsoxr": Project("libsoxr", "-Os -DNDEBUG", ("-DBUILD_TESTS=ON", "-DWITH_OPENMP=OFF"),
                       check=("test",), cmake=True),
    "msgpack-c": Project("msgpack-c", "-Os -DNDEBUG", ("-DMSGPACK_BUILD_TESTS=ON",),
                         check=("test",), cmake=True),
    # C++, CMake, as MinSizeRel builds it (log4cplus: the suite tests/test_suites.py runs)
    "log4cplus": Project("log4cplus", "-Os -DNDEBUG", ("-DLOG4CPLUS_BUILD_TESTING=ON",),
                         check=("test",), cmake=True),
    "gflags": Project("gflags", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON",), check=("test",),
                      cmake=True),
    "ninja-build": Project("ninja-build", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON",),
                           check=("test",), cmake=True),
    "double-conversion": Project("double-conversion", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON",),
                                 check=("test",), cmake=True),
    "pugixml": Project("pugixml", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON",
                                                   "-DPUGIXML_BUILD_TESTS=ON"),
                       check=("test",), cmake=True),
    "tinyxml2": Project("tinyxml2", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON",), check=("test",),
                        cmake=True),
    # its tests run by ctest, not as a step of the build, which they would fail
    "libjsoncpp": Project("libjsoncpp", "-Os -DNDEBUG", ("-DJSONCPP_WITH_POST_BUILD_UNITTEST=OFF",),
                          check=("test",), cmake=True),
    "fmtlib": Project("fmtlib", "-Os -DNDEBUG", ("-DFMT_DOC=OFF", "-DFMT_TEST=ON"),
                      check=("test",), cmake=True, patched=True),
    "snappy": Project("snappy", "-Os -DNDEBUG", ("-DSNAPPY_BUILD_TESTS=ON",
                                                 "-DSNAPPY_BUILD_BENCHMARKS=OFF",
                                                 "-DSNAPPY_USE_BUNDLED_GTEST=OFF"),
                      check=("test",), cmake=True, patched=True),
    "yaml-cpp": Project("yaml-cpp", "-Os -DNDEBUG", ("-DYAML_CPP_BUILD_TESTS=ON",),
                        check=("test",), cmake=True, patched=True),
    # its tables generated first (llmcc.train.corpus.PREPARE); its six exhaustive tests left
    # out, as tests/test_suites.py leaves them: minutes each (make hands ARGS to a shell)
    "re2": Project("re2", "-Oz -DNDEBUG", ("-DRE2_BUILD_TESTING=ON",),
                   check=("test", "ARGS=-E '^(dfa|exhaustive[123]?|random)_test'"), cmake=True),
    "muparser": Project("muparser", "-Os -DNDEBUG", ("-DBUILD_TESTING=ON", "-DENABLE_OPENMP=OFF"),
                        check=("test",), cmake=True),
    "googletest": Project("googletest", "-Os -DNDEBUG", ("-Dgtest_build_tests=ON",
                                                         "-Dgmock_build_tests=ON"),
                          check=("test",), cmake=True),
}


# --- the compiler a build is given -----------------------------------------------------------

def runnable_lists() -> tuple[PassList, ...]:
    """The lists the default advisor may choose for a compile, in the forest's order."""
    from llmcc.reliability.differential import FOREST, load_advised

    return tuple(p for p in load_advised(FOREST)[0] if not never_run(p))


def drawn(seed: str, key: str, lists: tuple[PassList, ...]) -> PassList:
    """The list a build with `seed` gives the object at `key`: the same in every rebuild."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return lists[int.from_bytes(digest, "big") % len(lists)]


def chosen_list(key: str, environ: dict[str, str]) -> PassList | None:
    """The list the harness asks for at `key`, or None: clang's own pipeline."""
    if environ.get(PLAN_ENV):
        with open(environ[PLAN_ENV]) as handle:
            text = json.load(handle).get(key)
        return parse(text) if text else None
    with open(environ[LISTS_ENV]) as handle:
        lists = tuple(parse(text) for text in json.load(handle))
    return drawn(environ[SEED_ENV], key, lists)


def compile_main(args: list[str], environ: dict[str, str]) -> int:
    """Compile as the harness asks; every call it does not decide is clang's, by exec."""
    from llmcc.invocation import Compile, classify

    clang = environ[CLANG_ENV]
    inv = classify(args, frozenset("sz"))
    if not isinstance(inv, Compile) or not (environ.get(SEED_ENV) or environ.get(PLAN_ENV)):
        os.execvp(clang, [clang, *args])
    key = os.path.relpath(os.path.abspath(inv.output), environ[ROOT_ENV])
    passes = chosen_list(key, environ)
    with tempfile.TemporaryDirectory(prefix="llmcc-projects-") as workdir:
        built = _build(inv, clang, passes, workdir, environ[CACHE_ENV])
    if built is None:  # the frontend or clang's pipeline failed: clang says so itself
        os.execvp(clang, [clang, *args])
    obj, depfile, stderr, row = built
    from llmcc.files import write_atomic

    write_atomic(inv.output, obj)
    if depfile is not None:
        write_atomic(inv.depfile, depfile)
    sys.stderr.buffer.write(stderr)
    _append(environ[LOG_ENV], {"object": key, "source": os.path.abspath(inv.source), **row})
    return 0


def _build(inv, clang: str, passes: PassList | None, workdir: str, cache: str):
    """(object, depfile, frontend's stderr, log fields), the object made by `passes` where
    it keeps the interface, else clang's pipeline's (kept in `cache` by IR, code generation
    flags and list); None where plain clang must compile."""
    from llmcc.files import write_atomic
    from llmcc.optimize import BaselineUnusable, Evaluator
    from llmcc.toolchain import StepFailed, ToolchainError, check_tools, run

    bitcode, depfile = os.path.join(workdir, "tu.bc"), os.path.join(workdir, "tu.d")
    code, out, err = run([clang, *inv.frontend_args(bitcode, depfile)], timeout=None)
    if code != 0 or out:
        return None
    deps = None
    if inv.depfile is not None:
        with open(depfile, "rb") as handle:
            deps = handle.read()
    with open(bitcode, "rb") as handle:  # a rebuild while narrowing makes most objects again
        made = os.path.join(cache, hashlib.blake2b(b"\0".join(
            [handle.read(), repr((inv.codegen, inv.pic)).encode(),
             to_text(passes).encode() if passes else b""]), digest_size=20).hexdigest())
    if os.path.exists(made + ".json"):
        with open(made + ".o", "rb") as handle, open(made + ".json") as row:
            return handle.read(), deps, err, json.load(row)
    try:
        tools = check_tools(clang, "")
    except ToolchainError:
        return None
    evaluator = Evaluator(inv.codegen, inv.pic, tools, bitcode, workdir, STEP_TIMEOUT,
                          stop_after_failure=False, language=inv.language)
    try:
        baseline = evaluator.baseline()
        row = {"list": None, "used": False, "baseline_size": baseline.size, "size": None}
        obj = baseline.object
        if passes is not None:
            result = evaluator.candidate(passes)
            row.update(list=to_text(passes), size=result.size, why=result.error,
                       used=result.object is not None and result.size is not None)
            if row["used"]:
                obj = result.object
    except (BaselineUnusable, StepFailed):  # clang's own compile says what it says
        return None
    finally:
        evaluator.close()
    write_atomic(made + ".o", obj)
    write_atomic(made + ".json", json.dumps(row).encode())
    return obj, deps, err, row


def _append(path: str, row: dict) -> None:
    """One JSON line (llmcc.events.append_line: parallel compiles never interleave); unlike a
    compile's event log, a row that cannot be written stops the run instead of vanishing."""
    from llmcc.events import append_line

    append_line(path, json.dumps(row) + "\n")


# --- the harness -----------------------------------------------------------------------------

class ProjectFailed(Exception):
    """Configuring or building failed, or the suite fails with plain clang: nothing to test."""


def debian_source(tarball: str, into: str) -> str:
    """The package's source as Debian builds it: `dpkg-source -x` of the .dsc that
    llmcc.train.debian.fetch downloaded beside `tarball`; ProjectFailed if that fails."""
    from llmcc.optimize import first_line

    described = glob.glob(os.path.join(os.path.dirname(tarball), "*.dsc"))
    if not described:
        raise ProjectFailed(f"no .dsc beside {tarball}")
    shutil.rmtree(into, ignore_errors=True)
    os.makedirs(os.path.dirname(into), exist_ok=True)
    done = subprocess.run(["dpkg-source", "--no-check", "-x", min(described), into],
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise ProjectFailed(f"dpkg-source -x failed: {first_line(done.stderr or done.stdout)}")
    return into


def project_source(project: Project, out: str, into: str) -> str:
    """The project's source unpacked into `into` as the harness builds it: Debian's patched
    source for a `patched` project, its tables generated where the corpus builder generates
    them (llmcc.train.corpus.PREPARE)."""
    from llmcc.train import debian
    from llmcc.train.corpus import PREPARE, unpack

    tarball = debian.fetch(project.package, os.path.join(out, "downloads"))
    source = debian_source(tarball, into) if project.patched else unpack(tarball, into)
    if project.package in PREPARE:
        PREPARE[project.package](source)
    return source


class Tree:
    """One configured build tree of a project, rebuilt from clean for every plan."""

    def __init__(self, project: Project, make_source: Callable[[], str], where: str, clang: str,
                 jobs: int) -> None:
        """`make_source`: unpacks the project's source and returns its directory; called only
        when `where` holds no configured tree yet (a resumed run reuses the tree)."""
        self.project, self.root, self.jobs = project, where, jobs
        self.history: list[dict] = []  # every plan built and checked, with its outcome
        self.lists = os.path.join(os.path.dirname(where), LISTS)
        self.cache = os.path.join(os.path.dirname(where), "objects")
        os.makedirs(self.cache, exist_ok=True)
        # the C and the C++ compiler: the same harness, clang's C or C++ driver behind it
        cc, cxx = (os.path.join(os.path.dirname(where), name) for name in ("cc", "c++"))
        for path, driver in ((cc, clang), (cxx, cxx_name(clang))):
            with open(path, "w") as handle:
                handle.write(f"#!/bin/sh\n{CLANG_ENV}={shlex.quote(driver)} exec "
                             f'{sys.executable} -P -m llmcc.reliability.projects cc "$@"\n')
            os.chmod(path, 0o755)
        configured = os.path.join(where, ".llmcc-configured")
        if not os.path.exists(configured):
            shutil.rmtree(where, ignore_errors=True)
            shutil.copytree(make_source(), where, symlinks=True)
            env = {**self._env(), "CC": cc, "CXX": cxx, "CFLAGS": project.cflags,
                   "CXXFLAGS": project.cflags}
            steps = [] if project.cmake or os.path.exists(os.path.join(where, "configure")) \
                else [["autoreconf", "-fi"]]  # a tarball of the git tree (libsodium's)
            for step in [*steps, *project.configure_steps(cc, cxx)]:
                if self._step(step, env, "llmcc-configure.log"):
                    raise ProjectFailed(f"{step[0]} failed: see {where}/llmcc-configure.log")
            open(configured, "w").close()

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in (SEED_ENV, PLAN_ENV, "MAKEFLAGS", "MFLAGS")}
        # CCACHE_DISABLE: a project that puts ccache before its compiler (jsoncpp's CMake
        # does) would otherwise get the plain build's objects back and test no list
        return {**env, ROOT_ENV: self.root, LISTS_ENV: self.lists, CACHE_ENV: self.cache,
                "CCACHE_DISABLE": "1", **extra}

    def _step(self, cmd: list[str], env: dict[str, str], log: str) -> int:
        with open(os.path.join(self.root, log), "wb") as out:
            return subprocess.run(cmd, cwd=self.root, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, check=False).returncode

    def passes_suite(self, seed: str = "", plan: dict[str, str] | None = None,
                     log: str = os.devnull) -> bool:
        """Build from clean with lists drawn by `seed`, or as `plan` says (no seed, no plan:
        plain clang), then run the suite; ProjectFailed if the build itself fails."""
        extra = {LOG_ENV: log}
        if plan is not None:
            path = os.path.join(os.path.dirname(self.root), "plan.json")
            with open(path, "w") as handle:
                json.dump(plan, handle)
            extra[PLAN_ENV] = path
        elif seed:
            extra[SEED_ENV] = seed
        env = self._env(**extra)
        self._step(self.project.make("clean"), env, "llmcc-clean.log")
        if self._step(self.project.make(f"-j{self.jobs}"), env, "llmcc-make.log") != 0:
            raise ProjectFailed(f"make failed (seed {seed!r}, plan {plan}): see "
                                f"{os.path.join(self.root, 'llmcc-make.log')}")
        # one test at a time: PCRE2's suite failed once in four builds run two at a time on
        # a busy machine, and passed three times with the same objects
        passed = self._step(self.project.make(*self.project.check), env, "llmcc-check.log") == 0
        self.history.append({"seed": seed, "plan": plan, "passed": passed,
                             "failed": [] if passed else self.failed_tests()})
        return passed

    def failed_tests(self) -> list[str]:
        """What the suite's log says failed (automake's FAIL/ERROR lines, ctest's list of
        failed tests), else that it did."""
        with open(os.path.join(self.root, "llmcc-check.log"), errors="replace") as handle:
            lines = handle.read().splitlines()
        return [line.strip() for line in lines
                if line.startswith(("FAIL:", "ERROR:", "XPASS:")) or CTEST_FAILED.match(line)] \
            or [f"make {' '.join(self.project.check)} failed"]

    def fails_alike(self, plan: dict[str, str], failed: list[str]) -> bool:
        """The suite fails with `plan` in a test of `failed`: one that fails now and then by
        itself (PCRE2's RunGrepTest on a busy machine) is not taken for the same failure."""
        return not self.passes_suite(plan=plan) and \
            bool(set(self.history[-1]["failed"]) & set(failed))


def read_rows(path: str) -> list[dict]:
    """llmcc.train.measure's, imported only by the harness (it costs a compile ~60 ms)."""
    from llmcc.train import measure

    return measure.read_rows(path)


def narrow(tree: Tree, used: dict[str, str], failed: list[str]) -> tuple[dict[str, str], bool]:
    """The fewest objects of `used` (object -> list) whose lists alone still fail the suite
    alike (`failed`), by halving; and whether one half alone failed at every step (False: the
    failure needs lists in both halves, and the set is where halving stopped)."""
    suspects, alone = dict(used), True
    while len(suspects) > 1:
        names = sorted(suspects)
        halves = [{n: suspects[n] for n in part} for part in (names[:len(names) // 2],
                                                                names[len(names) // 2:])]
        for half in halves:
            if tree.fails_alike(half, failed):
                suspects = half
                break
        else:
            alone = False
            break
    return suspects, alone


def shorten(tree: Tree, key: str, passes: PassList, failed: list[str]) -> PassList:
    """`passes` with every pass dropped that the failure does not need (differential's rule)."""
    from llmcc.reliability.differential import minimise_failure

    return minimise_failure(
        passes, lambda shorter: tree.fails_alike({key: to_text(shorter)}, failed), budget=12)


def test_project(name: str, project: Project, make_source: Callable[[], str], out: str,
                 builds: int, seed: int, jobs: int, clang: str, lists: tuple[PassList, ...],
                 say=print) -> list[dict]:
    """Run `builds` seeded builds of the project (resuming), each TU given one of `lists`,
    narrowing each failure down; returns every build's row."""
    home = os.path.abspath(os.path.join(out, name))
    os.makedirs(home, exist_ok=True)
    texts = [to_text(p) for p in lists]
    rows = read_rows(os.path.join(home, BUILDS))
    if rows:
        with open(os.path.join(home, LISTS)) as handle:
            if json.load(handle) != texts:
                raise ProjectFailed(f"{home} holds builds with other lists: use another --out")
    with open(os.path.join(home, LISTS), "w") as handle:
        json.dump(texts, handle)
    tree = Tree(project, make_source, os.path.join(home, "tree"), clang, jobs)
    if not rows:
        if not tree.passes_suite():
            raise ProjectFailed(f"{name}'s suite fails built by plain clang: "
                                f"{'; '.join(tree.failed_tests())}")
        say(f"{name}: the suite passes built by plain clang")
    for number in range(len(rows), builds):
        started, build_seed = time.time(), f"{seed}:{number}"
        log = os.path.join(home, f"build{number}.jsonl")
        if os.path.exists(log):
            os.unlink(log)
        passed = tree.passes_suite(seed=build_seed, log=log)
        compiles = read_rows(log)
        if not compiles:
            raise ProjectFailed(f"{name}'s build compiled nothing through the harness: its "
                                "compiler is not the one configure was given")
        used = {c["object"]: c["list"] for c in compiles if c["used"]}
        row = {"build": number, "seed": build_seed, "passed": passed, "compiles": len(compiles),
               "used": len(used), "lists": len(set(used.values())),
               "seconds": round(time.time() - started, 1)}
        if not passed:
            row["failure"] = _reproduce(tree, used, home, name)
        _append(os.path.join(home, BUILDS), row)
        rows.append(row)
        say(f"{name} build {number}: {'passed' if passed else 'FAILED'}, {len(used)} of "
            f"{len(compiles)} objects made by a list ({row['lists']} lists), "
            f"{row['seconds']:.0f} s")
    return rows


def _reproduce(tree: Tree, used: dict[str, str], home: str, name: str) -> dict:
    """Narrow a failing build down and record what was found, with every plan built on the
    way and what failed, in failures.jsonl. A suite can fail now and then for its own
    reasons (a time limit on a busy machine): what is kept is confirmed by building again."""
    first, failed = len(tree.history), tree.history[-1]["failed"]
    found = {"project": name, "failed": failed}
    suspects, alone = narrow(tree, used, failed)
    found.update(objects=suspects, alone=alone)
    if alone and len(suspects) == 1:
        (key, text), = suspects.items()
        found["confirmed"] = tree.fails_alike(suspects, failed) and tree.passes_suite()
        if found["confirmed"]:
            shortest = to_text(shorten(tree, key, parse(text), failed))
            if shortest != text and not tree.fails_alike({key: shortest}, failed):
                shortest = text  # the shorter list's failure did not happen again
            found["shortest"] = shortest
    found["steps"] = tree.history[first:]
    _append(os.path.join(home, FAILURES), found)
    return found


def report(out: str) -> str:
    """A table of every project's builds and failures under `out`."""
    lines = ["| project | builds | passed | objects made by a list | distinct lists | failures |",
             "|---|---:|---:|---:|---:|---|"]
    for name in sorted(os.listdir(out)):
        rows = read_rows(os.path.join(out, name, BUILDS))
        if not rows:
            continue
        failures = read_rows(os.path.join(out, name, FAILURES))
        found = "; ".join(f"{', '.join(f['objects'])}: {f.get('shortest', '?')}"
                          for f in failures) or "none"
        lines.append(f"| {name} | {len(rows)} | {sum(r['passed'] for r in rows)} | "
                     f"{sum(r['used'] for r in rows)} | "
                     f"{len(_lists_used(out, name))} | {found} |")
    return "\n".join(lines)


def _lists_used(out: str, name: str) -> set[str]:
    home = os.path.join(out, name)
    return {c["list"] for f in os.listdir(home) if f.startswith("build") and f != BUILDS
            for c in read_rows(os.path.join(home, f)) if c["used"]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cc"]:
        return compile_main(argv[1:], dict(os.environ))
    parser = argparse.ArgumentParser(prog="python -m llmcc.reliability.projects",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", action="append", choices=sorted(PROJECTS),
                        help="a project to test (repeatable; default: all)")
    parser.add_argument("--builds", type=int, default=4, help="seeded builds per project")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2, help="make -j")
    parser.add_argument("--lists", help="a JSON file: the pass lists to draw from (default: "
                        "every list the default advisor may run)")
    parser.add_argument("--out", required=True, help="results directory (resumable)")
    parser.add_argument("--report", action="store_true", help="print the table of a run")
    options = parser.parse_args(argv)
    if options.report:
        print(report(options.out))
        return 0
    from llmcc.toolchain import default_clang
    from llmcc.train import debian
    from llmcc.train.corpus import Skip

    clang = default_clang("", os.environ.get("PATH", ""), frozenset())
    lists = runnable_lists()
    if options.lists:
        try:
            with open(options.lists) as handle:
                lists = tuple(parse(text) for text in json.load(handle))
        except (OSError, ValueError, TypeError, PassListError) as err:
            parser.error(f"--lists {options.lists}: {err}")
    status = 0
    for name in options.project or sorted(PROJECTS):
        project = PROJECTS[name]
        try:
            into = os.path.join(options.out, name, "source")
            test_project(name, project, functools.partial(project_source, project, options.out,
                                                          into),
                         options.out, options.builds, options.seed, options.jobs, clang, lists)
        except (debian.FetchFailed, Skip, ProjectFailed) as err:
            print(f"{name}: {err}", file=sys.stderr)
            status = 1
    print(report(options.out))
    return status


if __name__ == "__main__":
    sys.exit(main())

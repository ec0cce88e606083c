"""End to end: real projects' own test suites pass when every object is compiled by llmcc.

A project's suite is the strongest evidence that the pass lists llmcc chose kept the code
correct: it runs thousands of checks written by people who know what the code must do (and
PCRE2's caught a pass that csmith programs never did). Each test builds with default settings
(3 candidates, a cold cache), SQLite and xz-utils once with each advisor that chooses for
itself (conftest's `advisor`: the popular lists, the shipped model and the shipped forest),
PCRE2 and the C++ projects with the default one, runs the suite, checks that llmcc itself
compiled the objects (with that advisor), and that they are never larger than plain clang's at
the same level.
"""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    INTERCEPTED,
    assert_advised_by,
    assert_no_larger,
    collect_objects,
    extract,
    intercepted_outputs,
    need_tool,
    read_log,
    report_sizes,
    run,
    run_ok,
)

from llmcc import events
from llmcc.objfile import read_object
from llmcc.train import corpus

pytestmark = pytest.mark.slow


def _optimised(log_path: str) -> set[str]:
    """Outputs llmcc wrote from a candidate pass list rather than clang's own pipeline."""
    return {e["output"] for e in read_log(log_path)
            if e["outcome"] in INTERCEPTED and e.get("passes")}


# --- SQLite: its Tcl test harness, testfixture -----------------------------------------------

# Upstream compiles and links testfixture in one clang call with ~90 sources, which llmcc hands
# to clang untouched (several inputs). This builds it from the same sources with the same flags,
# one `-c` per TU, so that every object goes through llmcc.
TESTFIXTURE_MAKEFILE = """\
include Makefile
TF_OBJS = $(addprefix tf/,$(notdir $(TESTFIXTURE_SRC:.c=.o)))
vpath %.c $(sort $(dir $(TESTFIXTURE_SRC)))
tf/%.o: %.c | sqlite3.c
\t@mkdir -p tf
\t$(TCC) -DSQLITE_NO_SYNC=1 $(TEMP_STORE) $(TESTFIXTURE_FLAGS) -c $< -o $@
testfixture-from-objects: $(TF_OBJS)
\t$(TCC) -o testfixture $(TF_OBJS) $(LIBTCL) $(TLIBS)
"""

# The SQL engine's core: queries, joins, expressions, functions, windows, triggers, indexes,
# DML, schema changes, foreign keys, virtual tables (~280 files, ~50 CPU seconds). Left out,
# as upstream's quick suites leave them out: the slow fault-injection variants.
SQLITE_TESTS = ("select", "where", "join", "expr", "func", "window", "trigger", "index",
                "insert", "update", "upsert", "with", "orderby", "fkey", "date", "printf",
                "json", "collate", "e_", "vtab", "view", "distinct", "rowvalue", "alter",
                "analyze", "like", "having", "aggnested", "gencol", "strict")
SQLITE_SLOW = ("malloc", "fault", "_err", "ioerr")
SQLITE_SUMMARY = re.compile(rb"^(\d+) errors out of (\d+) tests", re.MULTILINE)


def _build_testfixture(source: Path, build: Path, cc: str, env: dict[str, str]) -> Path:
    make = need_tool("make")
    build.mkdir()
    run_ok([str(source / "configure")], build, {**env, "CC": cc, "CFLAGS": "-Oz"})
    if "HAVE_TCL = 1" not in (build / "Makefile").read_text():
        pytest.skip("SQLite's configure found no Tcl: apt-get install tcl-dev")
    (build / "testfixture.mk").write_text(TESTFIXTURE_MAKEFILE)
    run_ok([make, "-f", "testfixture.mk", "-j2", "testfixture-from-objects"], build, env)
    return build / "testfixture"


def _run_sqlite_tests(testfixture: Path, tests: list[Path], work: Path,
                      env: dict[str, str]) -> int:
    """Run each test file in a directory of its own (they write test.db); returns how many
    test cases passed, after asserting every file reported no errors."""

    def one(test: Path) -> tuple[str, int, bytes]:
        cwd = work / test.stem
        cwd.mkdir(parents=True)
        done = run([str(testfixture), str(test)], cwd=cwd, env=env)
        return test.name, done.returncode, done.stdout + done.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, tests))
    failed, passed = {}, 0
    for name, returncode, output in results:
        summary = SQLITE_SUMMARY.search(output)
        if returncode != 0 or summary is None or summary[1] != b"0":
            failed[name] = output.decode(errors="replace")[-1500:]
        else:
            passed += int(summary[2])
    assert not failed, "SQLite tests failed:\n" + "\n".join(
        f"--- {name} ---\n{tail}" for name, tail in sorted(failed.items()))
    return passed


def test_sqlite_testfixture_built_with_llmcc_passes_the_core_sql_tests(
        tmp_path, env, advisor, llmcc, clang, debian_source):
    need_tool("tclsh")
    source = extract(debian_source("sqlite3"), tmp_path / "src")
    tests = sorted(path for path in (source / "test").glob("*.test")
                   if path.name.startswith(SQLITE_TESTS)
                   and not any(slow in path.name for slow in SQLITE_SLOW))
    assert len(tests) > 250

    testfixture = _build_testfixture(source, tmp_path / "llmcc", llmcc, env)
    passed = _run_sqlite_tests(testfixture, tests, tmp_path / "runs", env)
    assert passed >= 100_000  # select9.test alone runs ~37,000 cases
    print(f"\nSQLite: {passed} test cases in {len(tests)} files passed")

    ours = collect_objects(tmp_path / "llmcc" / "tf")
    assert "sqlite3.o" in ours and "tclsqlite.o" in ours
    intercepted = intercepted_outputs(env["LLMCC_LOG"])
    missing = sorted(name for name in ours if f"tf/{name}" not in intercepted)
    assert not missing, f"compiled by plain clang, not llmcc: {missing}"
    optimised = {f"tf/{name}" for name in ours} & _optimised(env["LLMCC_LOG"])
    assert optimised, "no object took a candidate pass list"
    assert_advised_by(env, advisor)

    _build_testfixture(source, tmp_path / "plain", clang, env)
    total, plain_total = assert_no_larger(ours, collect_objects(tmp_path / "plain" / "tf"))
    report_sizes(f"SQLite testfixture ({len(ours)} objects, {len(optimised)} from a candidate "
                 f"list, -Oz, {advisor} advisor)", total, plain_total)


# --- xz-utils: make check ---------------------------------------------------------------------

XZ_CONFIGURE = ["--disable-shared", "--disable-nls"]  # one object per TU, fewer probes
AUTOMAKE_SUMMARY = re.compile(rb"^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR): +(\d+)$", re.MULTILINE)


def _automake_counts(check_output: bytes) -> dict[str, int]:
    """`make check`'s summary of an automake test suite: TOTAL, PASS, FAIL, ... -> count."""
    return {name.decode(): int(value) for name, value in AUTOMAKE_SUMMARY.findall(check_output)}


def _names(paths) -> set[str]:
    """File names only: make runs in each subdirectory, so the log names objects relative to
    theirs."""
    return {Path(path).name for path in paths}


def test_xz_utils_make_check_passes_and_objects_are_never_larger(
        tmp_path, env, advisor, llmcc, clang, debian_source):
    make = need_tool("make")
    ours = extract(debian_source("xz-utils"), tmp_path / "src")
    plain = tmp_path / "plain"
    run_ok(["./configure", *XZ_CONFIGURE], ours, {**env, "CC": llmcc, "CFLAGS": "-Oz"})
    # The same configured tree built by clang: llmcc hands configure's probes to clang
    # untouched, so configuring again would give the same tree and cost a minute.
    shutil.copytree(ours, plain, symlinks=True)

    run_ok([make, "-j2"], ours, env)
    built = collect_objects(ours)
    counts = _automake_counts(run_ok([make, "-j2", "check"], ours, env))
    assert counts["FAIL"] == counts["ERROR"] == counts["XPASS"] == 0, counts
    assert counts["PASS"] == counts["TOTAL"] >= 18, counts
    print(f"\nxz-utils: make check, {counts['PASS']} of {counts['TOTAL']} tests passed")

    objects = collect_objects(ours)  # the library and tools, then the test programs
    assert "src/liblzma/liblzma_la-lzma_encoder.o" in objects and "tests/test_check.o" in objects
    intercepted = _names(intercepted_outputs(env["LLMCC_LOG"]))
    missing = sorted(name for name in objects if Path(name).name not in intercepted)
    assert not missing, f"compiled by plain clang, not llmcc: {missing}"
    optimised = _names(built) & _names(_optimised(env["LLMCC_LOG"]))
    assert optimised, "no object took a candidate pass list"
    assert_advised_by(env, advisor)

    run_ok([make, "-j2", f"CC={clang}"], plain, env)
    total, plain_total = assert_no_larger(built, collect_objects(plain))
    report_sizes(f"xz-utils ({len(built)} objects, {len(optimised)} from a candidate list, -Oz, "
                 f"{advisor} advisor)", total, plain_total)


# --- PCRE2: C that generates machine code (its JIT) ------------------------------------------

PCRE2_TESTS = 4  # RunTest and RunGrepTest (each also with the JIT), pcre2_jit_test, posix


def test_pcre2_with_its_jit_built_by_llmcc_passes_make_check(tmp_path, env, llmcc, clang,
                                                             debian_source):
    """PCRE2's JIT compiler (sljit) at -Os, as a shared library: its `make check`. A list with
    LLVM 19's IROutliner changed what pcre2_jit_compile.c computes (three checks of
    pcre2_jit_test failed; llmcc.passes.NEVER_RUN); the lists llmcc now runs on that TU must
    not, and one of them must be what its object was made by."""
    make = need_tool("make")
    source = extract(debian_source("pcre2"), tmp_path / "src")
    ours, plain = tmp_path / "llmcc", tmp_path / "plain"  # built beside the source: its
    for build, cc in ((ours, llmcc), (plain, clang)):     # Makefile links to it by full path
        build.mkdir()
        run_ok([str(source / "configure"), "--enable-jit"], build,
               {**env, "CC": cc, "CFLAGS": "-Os"})

    run_ok([make, "-j2"], ours, env)
    built = collect_objects(ours)
    counts = _automake_counts(run_ok([make, "-j2", "check"], ours, env))
    assert counts["FAIL"] == counts["ERROR"] == 0, counts
    assert counts["PASS"] == counts["TOTAL"] == PCRE2_TESTS, counts
    jit = "src/.libs/libpcre2_8_la-pcre2_jit_compile.o"  # what the shared library links
    assert jit in built and jit in _optimised(env["LLMCC_LOG"])

    run_ok([make, "-j2"], plain, env)
    total, plain_total = assert_no_larger(built, collect_objects(plain))
    report_sizes(f"PCRE2 ({len(built)} objects, -Os, JIT)", total, plain_total)


# --- RE2: its CMake test suite, every C++ TU through llmcc++ ----------------------------------

# Upstream's `make test` runs the rest; these are its `make bigtest` (15 minutes
# with ctest -j2 here).
RE2_BIG_TESTS = ("dfa_test", "exhaustive_test", "exhaustive1_test", "exhaustive2_test",
                 "exhaustive3_test", "random_test")
RE2_TESTS = 14
CTEST_SUMMARY = re.compile(rb"^100% tests passed, 0 tests failed out of (\d+)$", re.MULTILINE)
RE2_CASE = re.compile(rb"^\d+: \w+\.\w+$", re.MULTILINE)  # ctest -V: "<test>: Suite.Case"


def _generate_re2_tables(source: Path) -> None:
    """As the corpus builder does (llmcc.train.corpus.generate_re2_tables)."""
    try:
        corpus.generate_re2_tables(str(source))
    except corpus.Skip as err:
        pytest.skip(str(err))


def _assert_each_compiled_once(env: dict[str, str], objects: dict[str, bytes]) -> None:
    """One intercepted compile per object: none fell back to plain clang, none ran twice."""
    compiles = [e for e in read_log(env["LLMCC_LOG"]) if e["outcome"] in INTERCEPTED]
    assert sorted(e["output"] for e in compiles) == sorted(objects)
    assert {e["outcome"] for e in compiles} <= {events.MISS, events.HIT}  # a cold cache


def _build_cmake(source: Path, build: Path, cxx: str, env: dict[str, str], *options: str,
                 level: str = "-Oz") -> None:
    """A C++ CMake project built as MinSizeRel at `level` with `cxx` as its C++ compiler."""
    cmake = need_tool("cmake")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    run_ok([cmake, "-S", str(source), "-B", str(build), *generator, f"-DCMAKE_CXX_COMPILER={cxx}",
            "-DCMAKE_BUILD_TYPE=MinSizeRel", f"-DCMAKE_CXX_FLAGS_MINSIZEREL={level} -DNDEBUG",
            *options], build.parent, env)
    run_ok([cmake, "--build", str(build), "-j2"], build.parent, env)


def test_re2_built_with_llmcxx_passes_its_tests_and_objects_are_never_larger(
        tmp_path, env, llmccxx, clangxx, debian_source):
    ctest = need_tool("ctest")
    source = extract(debian_source("re2"), tmp_path / "src")
    _generate_re2_tables(source)

    # llmcc++ is CMake's C++ compiler: it detects, compiles and links through llmcc++
    ours = tmp_path / "llmcc"
    _build_cmake(source, ours, llmccxx, env)
    exclude = "^(" + "|".join(RE2_BIG_TESTS) + ")$"
    ctest_output = run_ok([ctest, "-j2", "-V", "-E", exclude], ours, env)
    summary = CTEST_SUMMARY.search(ctest_output)
    assert summary is not None and int(summary[1]) == RE2_TESTS, ctest_output[-3000:]
    cases = len(RE2_CASE.findall(ctest_output))
    assert cases >= 100, ctest_output[-3000:]
    print(f"\nRE2: ctest, {summary[1].decode()} tests ({cases} test cases) passed")

    objects = collect_objects(ours)  # the library, the testing library, tests and benchmark
    assert "CMakeFiles/re2.dir/re2/dfa.cc.o" in objects
    assert "CMakeFiles/re2_test.dir/re2/testing/re2_test.cc.o" in objects
    _assert_each_compiled_once(env, objects)
    optimised = set(objects) & _optimised(env["LLMCC_LOG"])

    plain = tmp_path / "plain"
    _build_cmake(source, plain, clangxx, env)
    total, plain_total = assert_no_larger(objects, collect_objects(plain))
    report_sizes(f"RE2 ({len(objects)} objects, {len(optimised)} from a candidate list, -Oz)",
                 total, plain_total)


# --- log4cplus: C++ that calls its standard library everywhere ----------------------------------

LOG4CPLUS_TESTS = 16
LOG4CPLUS_OPTIONS = ("-DLOG4CPLUS_BUILD_TESTING=ON",)


def test_log4cplus_calling_libstdcxx_where_clang_inlined_it_passes_its_tests(
        tmp_path, env, llmccxx, clangxx, debian_source):
    """At -Os (CMake's MinSizeRel) clang inlines libstdc++'s std::string and stream members,
    which size-tuned lists call instead (llmcc.interface, the C++ rule): log4cplus's own tests
    pass with such objects, and none is larger."""
    ctest = need_tool("ctest")
    source = extract(debian_source("log4cplus"), tmp_path / "src")
    ours = tmp_path / "llmcc"
    _build_cmake(source, ours, llmccxx, env, *LOG4CPLUS_OPTIONS, level="-Os")
    ctest_output = run_ok([ctest], ours, env)  # one at a time: some tests share files
    summary = CTEST_SUMMARY.search(ctest_output)
    assert summary is not None and int(summary[1]) == LOG4CPLUS_TESTS, ctest_output[-3000:]
    objects = collect_objects(ours)
    _assert_each_compiled_once(env, objects)

    plain = tmp_path / "plain"
    _build_cmake(source, plain, clangxx, env, *LOG4CPLUS_OPTIONS, level="-Os")
    plain_objects = collect_objects(plain)
    total, plain_total = assert_no_larger(objects, plain_objects)
    calling = [name for name in objects
               if any(symbol.startswith(("_ZNSt", "_ZNKSt"))
                      for symbol in read_object(objects[name]).undefined
                      - read_object(plain_objects[name]).undefined)]
    assert calling, "no object calls the library where clang's inlined it: the rule is untested"
    report_sizes(f"log4cplus ({len(objects)} objects, {len(calling)} calling std:: members "
                 "clang's inlined, -Os)", total, plain_total)

"""The project differential (llmcc.reliability.projects): seeded builds of a real build system
with one pass list per TU, the project's own check, and a failure narrowed to one object and
a shorter list. The project here is a small configure + make one whose check fails exactly
when one object keeps a function clang's -Oz inlines (what a list without the inliner does):
a stand-in for a suite catching a miscompile, since every list llmcc runs passes the suites
we have."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import script

from llmcc.passes import never_run, parse
from llmcc.reliability import projects

CONFIGURE = """\
cat > Makefile <<EOF
CC = $CC
CFLAGS = $CFLAGS
prog: main.o scale.o
\t\\$(CC) main.o scale.o -o prog
%.o: %.c
\t\\$(CC) \\$(CFLAGS) -c \\$< -o \\$@
check: prog
\t./prog && ./check.sh
clean:
\trm -f *.o prog
EOF
"""
MAIN = "int scale(int);\nint main(void) { return scale(21) != 42; }\n"
SCALE = ("static int twice(int x) { return x + x; }\n"
         "int scale(int x) { return twice(x); }\n")
# An automake-like suite: its failures named. FLAKY_RUN (if set) makes that run of it fail in
# a test of its own, as a suite on a busy machine now and then does.
CHECK = """\
echo $(( $(cat runs 2>/dev/null || echo 0) + 1 )) > runs
if nm scale.o | grep -q twice; then echo "FAIL: twice inlined"; exit 1; fi
if [ "$(cat runs)" = "$FLAKY_RUN" ]; then echo "FAIL: flaky"; exit 1; fi
"""
NO_INLINER = parse("always-inline sroa<modify-cfg>")  # keeps `twice`: the check fails
INLINER = parse("always-inline default<Oz>")


def _project(tmp_path: Path, check_passes_with_clang: bool = True) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    script(source / "configure", CONFIGURE)
    (source / "main.c").write_text(MAIN if check_passes_with_clang else
                                   MAIN.replace("!= 42", "!= 43"))
    (source / "scale.c").write_text(SCALE)
    script(source / "check.sh", CHECK)
    return source


TOY = projects.Project("toy", "-Oz")


def _test(tmp_path: Path, source: Path, lists, builds: int = 1,
          project: projects.Project = TOY, make_source=None) -> list[dict]:
    clang = subprocess.run(["sh", "-c", "command -v clang-19"], capture_output=True, text=True,
                           check=True).stdout.strip()
    return projects.test_project("toy", project, make_source or (lambda: str(source)),
                                 str(tmp_path / "out"), builds, 7, 2, clang, lists,
                                 say=lambda _: None)


def test_a_failing_list_is_narrowed_to_its_object_confirmed_and_shortened(tmp_path):
    rows = _test(tmp_path, _project(tmp_path), (NO_INLINER,))
    assert [r["passed"] for r in rows] == [False]
    assert rows[0]["compiles"] == rows[0]["used"] == 2  # main.o and scale.o, by that list
    failure = rows[0]["failure"]
    assert failure["objects"] == {"scale.o": "always-inline sroa<modify-cfg>"}
    assert failure["alone"] and failure["confirmed"]
    assert failure["shortest"] == "always-inline"  # sroa is not what keeps `twice`
    # every plan built on the way, the last a confirmation that the shortest list fails
    assert failure["steps"][-1] == {"seed": "", "plan": {"scale.o": "always-inline"},
                                    "passed": False, "failed": failure["steps"][-1]["failed"]}
    assert {"seed": "", "plan": None, "passed": True, "failed": []} in failure["steps"]
    recorded = [json.loads(line) for line in
                (tmp_path / "out" / "toy" / projects.FAILURES).read_text().splitlines()]
    assert recorded == [failure]
    assert "scale.o: always-inline" in projects.report(str(tmp_path / "out"))


def test_a_failure_in_another_test_is_not_taken_for_the_same_one(tmp_path, monkeypatch):
    # runs: 1 plain clang, 2 the seeded build (fails), 3 main.o's list alone: fails, but in
    # the flaky test; narrowing goes on to scale.o's
    monkeypatch.setenv("FLAKY_RUN", "3")
    (row,) = _test(tmp_path, _project(tmp_path), (NO_INLINER,))
    assert row["failure"]["failed"] == ["FAIL: twice inlined"]
    assert row["failure"]["objects"] == {"scale.o": "always-inline sroa<modify-cfg>"}
    assert row["failure"]["steps"][0] == {"seed": "", "plan": {"main.o": "always-inline "
                                          "sroa<modify-cfg>"}, "passed": False,
                                          "failed": ["FAIL: flaky"]}
    assert row["failure"]["confirmed"] and row["failure"]["shortest"] == "always-inline"


CMAKE_LISTS = """\
cmake_minimum_required(VERSION 3.13)
project(toy CXX)
enable_testing()
add_executable(prog main.cc scale.cc)
set(SCALE_OBJECT ${CMAKE_BINARY_DIR}/CMakeFiles/prog.dir/scale.cc.o)
add_test(NAME runs COMMAND prog)
add_test(NAME inlined COMMAND sh -c "! nm ${SCALE_OBJECT} | grep -q twice")
"""


def test_a_cmake_cxx_project_is_narrowed_by_its_ctest_failure(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "CMakeLists.txt").write_text(CMAKE_LISTS)
    # the C project's sources as C++ (linked by clang's C++ driver)
    (source / "main.cc").write_text('extern "C" ' + MAIN)
    (source / "scale.cc").write_text(SCALE.replace("int scale", 'extern "C" int scale'))
    project = projects.Project("toy", "-Oz", check=("test",), cmake=True)
    (row,) = _test(tmp_path, source, (NO_INLINER,), project=project)
    failure = row["failure"]
    assert failure["failed"] == ["2 - inlined (Failed)"]
    assert failure["objects"] == {"_build/CMakeFiles/prog.dir/scale.cc.o":
                                  "always-inline sroa<modify-cfg>"}
    assert failure["confirmed"] and failure["shortest"] == "always-inline"


def test_builds_that_pass_are_recorded_and_a_rerun_resumes(tmp_path):
    source = _project(tmp_path)
    rows = _test(tmp_path, source, (INLINER,), builds=2)
    assert [r["passed"] for r in rows] == [True, True]
    assert all(r["used"] == 2 and r["lists"] == 1 for r in rows)

    def unpack_again():  # the configured tree is reused: its source is not made again
        raise AssertionError("the source was unpacked again")

    # builds 0 and 1 are not redone
    again = _test(tmp_path, source, (INLINER,), builds=3, make_source=unpack_again)
    assert [r["seed"] for r in again] == ["7:0", "7:1", "7:2"]
    with pytest.raises(projects.ProjectFailed, match="other lists"):
        _test(tmp_path, source, (NO_INLINER,), builds=4)


def test_a_suite_that_fails_with_plain_clang_tests_nothing(tmp_path):
    with pytest.raises(projects.ProjectFailed, match="fails built by plain clang"):
        _test(tmp_path, _project(tmp_path, check_passes_with_clang=False), (INLINER,))


def test_the_compiler_uses_the_planned_list_and_hands_the_rest_to_clang(tmp_path, env, clang):
    source = _project(tmp_path)
    compiler = tmp_path / "cc"
    script(compiler, f'exec {projects.sys.executable} -m llmcc.reliability.projects cc "$@"')
    log, plan = tmp_path / "log.jsonl", tmp_path / "plan.json"
    plan.write_text(json.dumps({"scale.o": "always-inline sroa<modify-cfg>"}))
    base = {**env, projects.CLANG_ENV: clang, projects.ROOT_ENV: str(source),
            projects.LOG_ENV: str(log), projects.CACHE_ENV: str(tmp_path)}

    def compile_with(extra: dict[str, str]) -> bytes:
        subprocess.run([str(compiler), "-Oz", "-c", "scale.c", "-o", "scale.o"], cwd=source,
                       env={**base, **extra}, check=True)
        return (source / "scale.o").read_bytes()

    planned = compile_with({projects.PLAN_ENV: str(plan)})
    assert b"twice" in planned
    (row,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert row["object"] == "scale.o" and row["used"] and row["size"] > row["baseline_size"]
    plain = compile_with({})  # no plan, no seed: clang itself, and nothing logged
    subprocess.run([clang, "-Oz", "-c", "scale.c", "-o", "ref.o"], cwd=source, check=True)
    assert plain == (source / "ref.o").read_bytes() and b"twice" not in plain
    assert len(log.read_text().splitlines()) == 1
    plan.write_text("{}")  # planned for no object: clang's pipeline through llmcc's evaluator
    assert compile_with({projects.PLAN_ENV: str(plan)}) == plain


def test_builds_draw_every_list_the_default_advisor_may_run_and_the_same_in_a_rebuild():
    lists = projects.runnable_lists()
    assert len(lists) > 50 and not any(never_run(p) for p in lists)
    keys = [f"src/file{n}.o" for n in range(2000)]
    first = [projects.drawn("1:0", key, lists) for key in keys]
    assert set(first) == set(lists)  # a few builds of a large project try every list
    assert first == [projects.drawn("1:0", key, lists) for key in keys]
    assert first != [projects.drawn("1:1", key, lists) for key in keys]


def test_a_patched_project_is_built_from_the_source_debian_builds(tmp_path):
    """`patched`: the upstream tarball with the patches of Debian's .dsc beside it applied
    (Debian's snappy, yaml-cpp, fmt and leveldb build their tests with its googletest so)."""
    import hashlib
    import tarfile

    upstream = tmp_path / "toy-1.0"
    upstream.mkdir()
    (upstream / "scale.c").write_text(SCALE)
    debian = tmp_path / "debian"
    (debian / "source").mkdir(parents=True)
    (debian / "source" / "format").write_text("3.0 (quilt)\n")
    (debian / "patches").mkdir()
    (debian / "patches" / "series").write_text("thrice.patch\n")
    (debian / "patches" / "thrice.patch").write_text(
        "--- a/scale.c\n+++ b/scale.c\n@@ -1,2 +1,2 @@\n"
        "-static int twice(int x) { return x + x; }\n"
        "+static int twice(int x) { return x + x + x; }\n"
        " int scale(int x) { return twice(x); }\n")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    tarballs = {downloads / "toy_1.0.orig.tar.gz": upstream,
                downloads / "toy_1.0-1.debian.tar.xz": debian}
    for path, tree in tarballs.items():
        with tarfile.open(path, "w:gz" if path.suffix == ".gz" else "w:xz") as archive:
            archive.add(tree, arcname=tree.name)
    files = "".join(f" {hashlib.md5(p.read_bytes()).hexdigest()} {p.stat().st_size} {p.name}\n"
                    for p in tarballs)
    (downloads / "toy_1.0-1.dsc").write_text(
        f"Format: 3.0 (quilt)\nSource: toy\nVersion: 1.0-1\nFiles:\n{files}")

    tree = projects.debian_source(str(downloads / "toy_1.0.orig.tar.gz"),
                                  str(tmp_path / "out" / "source"))
    assert "x + x + x" in (Path(tree) / "scale.c").read_text()
    assert (upstream / "scale.c").read_text() == SCALE
    (downloads / "toy_1.0-1.debian.tar.xz").unlink()
    with pytest.raises(projects.ProjectFailed, match="dpkg-source -x failed"):
        projects.debian_source(str(downloads / "toy_1.0.orig.tar.gz"), tree)
    (downloads / "toy_1.0-1.dsc").unlink()
    with pytest.raises(projects.ProjectFailed, match="no .dsc"):
        projects.debian_source(str(downloads / "toy_1.0.orig.tar.gz"), tree)


@pytest.mark.skipif(shutil.which("ccache") is None, reason="ccache is not installed")
def test_ccache_in_front_of_the_compiler_does_not_hand_back_the_plain_build(tmp_path,
                                                                             monkeypatch):
    """jsoncpp's CMake puts ccache before the compiler it is given: the seeded build would get
    the plain build's objects from ccache and test no list."""
    monkeypatch.setenv("CCACHE_DIR", str(tmp_path / "ccache"))
    source = _project(tmp_path)
    script(source / "configure", CONFIGURE.replace("CC = $CC", "CC = ccache $CC"))
    (row,) = _test(tmp_path, source, (NO_INLINER,))
    assert row["used"] == 2 and not row["passed"]


def test_a_build_that_bypasses_the_harness_tests_nothing_and_says_so(tmp_path):
    source = _project(tmp_path)
    script(source / "configure", CONFIGURE.replace("CC = $CC", "CC = clang-19"))
    with pytest.raises(projects.ProjectFailed, match="compiled nothing through the harness"):
        _test(tmp_path, source, (NO_INLINER,))

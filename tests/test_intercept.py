"""Intercepted compiles at -Oz/-Os against the real clang-19: what the user sees must be clang's,
the object never larger, the interface the same; caches, the launcher form (the PATH shims are
in test_shims.py), broken tools, and `llmcc-ctl`.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import (
    SIZE_C,
    SIZE_H,
    compile_outputs,
    log_events,
    log_outcomes,
    run,
    script,
)

from llmcc.objfile import read_object
from llmcc.toolchain import opt_beside

SHAPES_CC = """#include <vector>
template <class T> class Stack {
public:
    void push(const T &v) { items.push_back(v); }
    T pop() { T v = items.back(); items.pop_back(); return v; }
    bool empty() const { return items.empty(); }
private:
    std::vector<T> items;
};
class Shape {
public:
    explicit Shape(int side) : side_(side) {}
    virtual ~Shape() = default;
    virtual int area() const { return side_ * side_; }
protected:
    int side_;
};
int total_area(int n) {
    Stack<Shape> shapes;
    for (int i = 0; i < n; i++) shapes.push(Shape(i));
    int sum = 0, unused;
    while (!shapes.empty()) sum += shapes.pop().area();
    return sum;
}
"""

QUIET_C = "int quiet(int x) { return x * 2 + 1; }\n"


@pytest.fixture
def tree(tmp_path) -> Path:
    """A small project beside (not inside) the per-test cache, config and log."""
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "out").mkdir()
    (root / "size.h").write_text(SIZE_H)
    (root / "size.c").write_text(SIZE_C)
    (root / "sub" / "size.c").write_text(SIZE_C.replace('"size.h"', '"../size.h"'))
    (root / "shapes.cc").write_text(SHAPES_CC)
    (root / "quiet.c").write_text(QUIET_C)
    return root


# --- what the user sees --------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["-Oz", "-Os"])
def test_warnings_match_plain_clang_and_are_printed_once(tree, clang, llmcc, env, level):
    args = [level, "-Wall", "-c", "size.c", "-o", "size.o"]
    rc, expected, _ = compile_outputs(clang, args, tree, env, ["size.o"])
    assert rc == 0 and b"unused variable 'unused'" in expected
    rc, actual, files = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert rc == 0 and files["size.o"] is not None
    assert actual.decode() == expected.decode()
    assert actual.count(b"unused variable 'unused'") == 1
    assert log_outcomes(env) == ["miss"]


@pytest.mark.parametrize("werror, outcome", [([], "miss"), (["-Werror"], "fallback")])
@pytest.mark.parametrize("flag, warning", [
    ("-Wno-format-contains-nul", b"unknown warning option"),
    ("-fgcse", b"optimization flag '-fgcse' is not supported"),
    ("-moutline-atomics", b"'x86_64' does not support '-moutline-atomics'; flag ignored"),
    ("-frelaxed-template-template-args", b"'-frelaxed-template-template-args' is deprecated")])
def test_an_option_clang_only_warns_about_is_reported_once_and_the_tu_still_tuned(
        tree, clang, llmcc, env, werror, outcome, flag, warning):
    # Options clang accepts with a warning (GCC's, such as sharutils' -Wno-format-contains-nul;
    # another target's; deprecated spellings): clang warns at every invocation, code
    # generation included; -Werror makes it an error.
    args = ["-Oz", *werror, flag, "-c", "size.c", "-o", "size.o"]
    rc_plain, expected, plain = compile_outputs(clang, args, tree, env, ["size.o"])
    assert expected.count(warning) == 1
    rc, actual, tuned = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert (rc, actual.decode()) == (rc_plain, expected.decode())
    assert log_outcomes(env) == [outcome]  # tuned, unless clang itself refuses the flags
    if not werror:
        assert read_object(tuned["size.o"]).size <= read_object(plain["size.o"]).size
    else:
        assert rc != 0 and tuned["size.o"] is None


@pytest.mark.parametrize("level", ["-Oz", "-Os"])
@pytest.mark.parametrize("source, extra", [("size.c", []), ("size.c", ["-fno-pic"]),
                                           ("size.c", ["-g"]), ("quiet.c", [])])
def test_object_is_never_larger_and_defines_the_same_symbols(tree, clang, llmcc, env, level,
                                                             source, extra):
    args = [level, *extra, "-c", source, "-o", "x.o"]
    rc, _, plain = compile_outputs(clang, args, tree, env, ["x.o"])
    assert rc == 0
    rc, _, tuned = compile_outputs(llmcc, args, tree, env, ["x.o"])
    assert rc == 0
    plain_info, tuned_info = read_object(plain["x.o"]), read_object(tuned["x.o"])
    assert tuned_info.size <= plain_info.size
    assert tuned_info.defined == plain_info.defined
    assert tuned_info.undefined <= plain_info.undefined
    event = log_events(env)[-1]
    assert event["outcome"] == "miss"
    assert event["baseline_size"] == plain_info.size and event["size"] == tuned_info.size


def test_macros_through_wp_are_intercepted_and_take_effect(tree, clang, llmcc, env):
    """Distributions' hardening flags (-Wp,-D_FORTIFY_SOURCE=2, -Wp,-D_GLIBCXX_ASSERTIONS)
    define macros through -Wp: the frontend sees them exactly as clang's does."""
    (tree / "macros.c").write_text(
        "#include <string.h>\n"
        "#ifdef WITH_EXTRA\nint extra(int x) { return x * 3; }\n#endif\n"
        "#ifndef NDEBUG\nint debug_only(void) { return 1; }\n#endif\n"
        "void copy(const char *from, unsigned long n, void (*use)(char *)) {\n"
        "    char to[8]; memcpy(to, from, n); use(to); }\n")
    args = ["-Oz", "-DNDEBUG", "-Wp,-D_FORTIFY_SOURCE=2", "-Wp,-DWITH_EXTRA,-UNDEBUG", "-c",
            "macros.c", "-o", "macros.o"]
    rc, expected, plain = compile_outputs(clang, args, tree, env, ["macros.o"])
    assert rc == 0
    rc, actual, tuned = compile_outputs(llmcc, args, tree, env, ["macros.o"])
    assert rc == 0 and actual == expected
    assert log_outcomes(env) == ["miss"]
    plain_info, tuned_info = read_object(plain["macros.o"]), read_object(tuned["macros.o"])
    assert {"extra", "debug_only", "copy"} <= tuned_info.defined == plain_info.defined
    assert "__memcpy_chk" in plain_info.undefined  # _FORTIFY_SOURCE took effect
    assert tuned_info.undefined <= plain_info.undefined
    assert tuned_info.size <= plain_info.size


def test_cxx_through_llmcxx_is_intercepted_and_never_larger(tree, clangxx, llmccxx, env):
    args = ["-Oz", "-Wall", "-c", "shapes.cc"]
    rc, expected, plain = compile_outputs(clangxx, args, tree, env, ["shapes.o"])
    assert rc == 0 and b"unused variable 'unused'" in expected
    rc, actual, tuned = compile_outputs(llmccxx, args, tree, env, ["shapes.o"])
    assert rc == 0
    assert actual.decode() == expected.decode()
    plain_info, tuned_info = read_object(plain["shapes.o"]), read_object(tuned["shapes.o"])
    assert tuned_info.size <= plain_info.size
    assert tuned_info.defined == plain_info.defined
    assert any("total_area" in name for name in tuned_info.defined)
    assert log_outcomes(env) == ["miss"]


@pytest.mark.parametrize("level", ["-Oz", "-Os"])
@pytest.mark.parametrize("extra", [[], ["-g"], ["-fno-pic"], ["-ffunction-sections"]])
def test_baseline_reproduces_plain_clang_byte_for_byte(tree, clang, llmcc, env, level, extra):
    """With no advisor llmcc keeps clang's own pipeline, which must be exactly clang's object."""
    env["LLMCC_ADVISOR"] = "none"
    args = [level, *extra, "-c", "size.c", "-o", "size.o"]
    _, _, plain = compile_outputs(clang, args, tree, env, ["size.o"])
    rc, _, tuned = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert rc == 0
    assert tuned["size.o"] == plain["size.o"]
    assert log_outcomes(env) == ["miss"]


def test_response_file_compile_is_intercepted(tree, clang, llmcc, env):
    (tree / "args.rsp").write_text('-Oz -Wall\n-MD -c "size.c" -o out/size.o\n')
    rc, expected, plain = compile_outputs(clang, ["@args.rsp"], tree, env, ["out/size.o", "out/size.d"])
    assert rc == 0
    rc, actual, tuned = compile_outputs(llmcc, ["@args.rsp"], tree, env, ["out/size.o", "out/size.d"])
    assert rc == 0 and actual == expected
    assert tuned["out/size.d"] == plain["out/size.d"]
    assert read_object(tuned["out/size.o"]).size <= read_object(plain["out/size.o"]).size
    assert log_outcomes(env) == ["miss"]


# --- depfiles ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, outputs", [
    (["-MD", "-c", "size.c", "-o", "out/size.o"], ["out/size.o", "out/size.d"]),
    (["-MMD", "-c", "size.c", "-o", "out/size.o"], ["out/size.o", "out/size.d"]),
    (["-MD", "-MF", "x.d", "-MT", "y", "-c", "size.c", "-o", "out/size.o"], ["out/size.o", "x.d"]),
    (["-MMD", "-MP", "-MQ", "$(OBJ)", "-c", "size.c"], ["size.o", "size.d"]),
    (["-MD", "-c", "sub/size.c"], ["size.o", "size.d", "sub/size.d"]),
    (["-MD", "-c", "size.c", "-o", "out/size.c.obj"], ["out/size.c.obj", "out/size.c.d"]),
], ids=["md", "mmd", "md-mf-mt", "mmd-mp-mq", "md-without-o", "md-double-extension"])
def test_depfile_matches_plain_clang(tree, clang, llmcc, env, args, outputs):
    args = ["-Oz", *args]
    rc, _, plain = compile_outputs(clang, args, tree, env, outputs)
    assert rc == 0
    rc, _, tuned = compile_outputs(llmcc, args, tree, env, outputs)
    assert rc == 0
    assert log_outcomes(env) == ["miss"]
    for name in outputs:
        if name.endswith(".d"):
            assert tuned[name] == plain[name], name
        else:
            assert tuned[name] is not None and plain[name] is not None
    assert {n for n, blob in tuned.items() if blob} == {n for n, blob in plain.items() if blob}


@pytest.mark.parametrize("args", [["-o", "null"], ["-MD", "-MF", "null", "-o", "size.o"]],
                         ids=["object", "depfile"])
def test_output_to_a_device_is_written_through_never_replaced(tree, clang, llmcc, env, args):
    """`-o /dev/null` is common in flag probes; a rename over it would replace the device."""
    device = tree / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    except PermissionError:
        pytest.skip("cannot create a device node here")
    args = ["-Oz", "-c", "size.c", *args]
    expected = run([clang, *args], cwd=tree, env=env)
    actual = run([llmcc, *args], cwd=tree, env=env)
    assert stat.S_ISCHR(device.stat().st_mode)
    assert (actual.returncode, actual.stderr) == (expected.returncode, expected.stderr)
    assert log_outcomes(env) == ["fallback"]


def test_object_permissions_follow_the_umask_like_clang(tree, clang, llmcc, env):
    args = ["-Oz", "-c", "size.c", "-MD"]
    modes = []
    for program in (clang, llmcc):
        assert run(["sh", "-c", 'umask 027 && exec "$@"', "sh", program, *args],
                   cwd=tree, env=env).returncode == 0
        modes.append(tuple(stat.S_IMODE((tree / name).stat().st_mode)
                           for name in ("size.o", "size.d")))
        (tree / "size.o").unlink()
        (tree / "size.d").unlink()
    assert modes[0] == modes[1] == (0o640, 0o640)


# --- caches --------------------------------------------------------------------------------------

def test_second_compile_is_a_direct_hit_with_the_same_bytes_depfile_and_warning(tree, llmcc,
                                                                                  env):
    args = ["-Oz", "-Wall", "-MD", "-c", "size.c", "-o", "out/size.o"]
    first = compile_outputs(llmcc, args, tree, env, ["out/size.o", "out/size.d"])
    second = compile_outputs(llmcc, args, tree, env, ["out/size.o", "out/size.d"])
    assert log_outcomes(env) == ["miss", "direct_hit"]
    assert second == first
    assert first[1].count(b"unused variable 'unused'") == 1
    assert first[2]["out/size.d"] is not None


def test_a_miss_logs_where_its_time_went(tree, llmcc, env):
    compile_outputs(llmcc, ["-Oz", "-c", "size.c"], tree, env, ["size.o"])
    [event] = log_events(env)
    stages = event["stages"]
    steps = ("frontend", "baseline", "advisor", "candidates")
    assert event["outcome"] == "miss" and event["evaluated"] >= 1
    assert all(stages[name] > 0 for name in ("startup", *steps))
    assert sum(stages[name] for name in steps) <= stages["total"]


@pytest.mark.parametrize("flags", [["-MMD"], ["-MD", "-MMD"]])
def test_user_header_depfile_stays_free_of_system_headers_when_cached(tree, clang, llmcc, env,
                                                                       flags):
    """Listing headers for direct mode would add system headers to an -MMD depfile."""
    args = ["-Oz", *flags, "-c", "size.c"]
    _, _, plain = compile_outputs(clang, args, tree, env, ["size.o", "size.d"])
    assert b"/usr/include" not in plain["size.d"]
    first = compile_outputs(llmcc, args, tree, env, ["size.o", "size.d"])
    second = compile_outputs(llmcc, args, tree, env, ["size.o", "size.d"])
    assert first[2]["size.d"] == second[2]["size.d"] == plain["size.d"]
    assert log_outcomes(env) == ["miss", "hit"]


def test_header_changed_only_in_a_comment_is_an_ir_hit(tree, llmcc, env):
    args = ["-Oz", "-Wall", "-c", "size.c"]
    first = compile_outputs(llmcc, args, tree, env, ["size.o"])
    with open(tree / "size.h", "a") as handle:
        handle.write("/* a comment changes the header, not the IR */\n")
    second = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert log_outcomes(env) == ["miss", "hit"]
    assert second == first
    assert second[1].count(b"unused variable 'unused'") == 1


def test_header_change_that_changes_the_code_is_a_miss(tree, llmcc, env):
    args = ["-Oz", "-c", "size.c"]
    compile_outputs(llmcc, args, tree, env, ["size.o"])
    (tree / "size.h").write_text(SIZE_H.replace("#define SCALE 3", "#define SCALE 5"))
    compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert log_outcomes(env) == ["miss", "miss"]


def test_changed_arguments_are_not_a_direct_hit(tree, llmcc, env):
    compile_outputs(llmcc, ["-Oz", "-c", "size.c"], tree, env, ["size.o"])
    compile_outputs(llmcc, ["-Oz", "-c", "size.c", "-DEXTRA=1"], tree, env, ["size.o"])
    assert log_outcomes(env) == ["miss", "hit"]  # same IR, different call


def test_disabled_llmcc_is_plain_clang(tree, clang, llmcc, env):
    env["LLMCC_DISABLE"] = "1"
    args = ["-Oz", "-Wall", "-MD", "-c", "size.c"]
    expected = compile_outputs(clang, args, tree, env, ["size.o", "size.d"])
    actual = compile_outputs(llmcc, args, tree, env, ["size.o", "size.d"])
    assert actual == expected
    assert log_events(env) == []


# --- ways to call llmcc --------------------------------------------------------------------------

@pytest.mark.parametrize("compiler", ["path", "name"])
def test_launcher_form_compiles_with_the_named_clang(tree, clang, llmcc, env, compiler):
    env.pop("LLMCC_CLANG")
    named = clang if compiler == "path" else os.path.basename(clang)
    env["PATH"] = os.path.dirname(clang) + os.pathsep + env["PATH"]
    args = ["-Oz", "-Wall", "-c", "size.c"]
    rc, expected, plain = compile_outputs(clang, args, tree, env, ["size.o"])
    rc, actual, tuned = compile_outputs(llmcc, [named, *args], tree, env, ["size.o"])
    assert rc == 0
    assert actual.decode() == expected.decode()
    assert read_object(tuned["size.o"]).size <= read_object(plain["size.o"]).size
    assert log_outcomes(env) == ["miss"]


def test_launcher_form_passes_through_with_the_named_program(tree, llmcc, env):
    """`llmcc clang-19 --version` runs clang-19 itself, with the name as given."""
    env.pop("LLMCC_CLANG")
    done = run([llmcc, "/usr/lib/llvm-19/bin/clang", "--version"], cwd=tree, env=env)
    plain = run(["/usr/lib/llvm-19/bin/clang", "--version"], cwd=tree, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, plain.stdout, plain.stderr)


# --- broken tools --------------------------------------------------------------------------------

GARBAGE = """out=; prev=; for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
echo '%$# not IR'; echo 'warning: ???' >&2; head -c 4096 /dev/urandom > "$out"; exit 0"""


def _counting_opt(tmp_path: Path, clang: str, failure: str) -> tuple[str, Path]:
    """A stand-in opt that answers --version as the real one, logs every other call, then
    does `failure`; returns (its path, the call log)."""
    calls = tmp_path / "opt-calls"
    calls.touch()
    return script(tmp_path / "opt", f"""\
if [ "$1" = --version ]; then exec {opt_beside(clang)} --version; fi
echo call >> {calls}
{failure}
"""), calls


def _assert_one_failure_warned_once_and_plain_clangs_object(tree, clang, llmcc, env, tool):
    """The first failing candidate stops the rest; one warning names the tool; the object is
    plain clang's; the decision is not cached (the next compile is a miss again)."""
    args = ["-Oz", "-Wall", "-c", "size.c"]
    rc, expected, plain = compile_outputs(clang, args, tree, env, ["size.o"])
    for _ in range(2):
        rc, actual, tuned = compile_outputs(llmcc, args, tree, env, ["size.o"])
        assert rc == 0
        assert tuned["size.o"] == plain["size.o"]
        ours = [line for line in actual.decode().splitlines() if line.startswith("llmcc:")]
        assert len(ours) == 1 and f"{tool} " in ours[0] and "not cache" in ours[0], ours
        assert actual.decode().replace(ours[0] + "\n", "") == expected.decode()
        event = log_events(env)[-1]
        assert event["outcome"] == "miss" and event["passes"] is None and event["tool_failure"]
        assert [t.get("tool_failure", False) for t in event["tried"]] == [False, True]


FAILURES = ["exit 1", "exec sleep 30", "kill -SEGV $$", GARBAGE]
FAILURE_IDS = ["exits-1", "hangs", "crashes", "writes-garbage"]


@pytest.mark.parametrize("failure", FAILURES, ids=FAILURE_IDS)
def test_broken_opt_is_tried_once_per_tu_and_gives_plain_clangs_object(tree, tmp_path, clang,
                                                                       llmcc, env, failure):
    """k = 3, but after the first failure no other candidate runs: one time-out, not three."""
    env["LLMCC_OPT"], calls = _counting_opt(tmp_path, clang, failure)
    env["LLMCC_TIMEOUT"] = "1"
    _assert_one_failure_warned_once_and_plain_clangs_object(tree, clang, llmcc, env, "opt")
    assert calls.read_text().count("call") == 2  # one per compile


@pytest.mark.parametrize("failure", ["kill -SEGV $$", "exec sleep 30"], ids=["crashes", "hangs"])
def test_code_generation_failing_on_candidates_still_gives_plain_clangs_object(
        tree, tmp_path, clang, llmcc, env, failure):
    """Clang itself crashes or hangs generating code for optimised IR (a backend bug that only
    an unusual pass order reaches): the candidates stop, the baseline stands."""
    env["LLMCC_OPT"] = opt_beside(clang)  # not found beside the fake clang
    env["LLMCC_CLANG"] = script(tmp_path / "clang-19", f"""\
case "$*" in *candidate*.bc*) {failure};; esac
exec {clang} "$@"
""")
    env["LLMCC_TIMEOUT"] = "1"
    _assert_one_failure_warned_once_and_plain_clangs_object(tree, clang, llmcc, env, "clang-19")


def test_decision_made_while_opt_was_broken_is_not_served_once_it_works(tree, tmp_path, clang,
                                                                       llmcc, env):
    args = ["-Oz", "-c", "size.c"]
    healthy = {**env, "LLMCC_CACHE_DIR": str(tmp_path / "healthy"),
               "LLMCC_LOG": str(tmp_path / "healthy.log")}
    expected = compile_outputs(llmcc, args, tree, healthy, ["size.o"])[2]
    env["LLMCC_OPT"], _ = _counting_opt(tmp_path, clang, "kill -SEGV $$")
    assert compile_outputs(llmcc, args, tree, env, ["size.o"])[0] == 0
    env["LLMCC_OPT"] = opt_beside(clang)
    rc, stderr, actual = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert rc == 0 and b"llmcc:" not in stderr
    assert log_outcomes(env) == ["miss", "miss"]
    assert "tool_failure" not in log_events(env)[-1]
    assert actual == expected


def test_breaker_stops_calling_a_broken_opt_until_it_changes(tree, tmp_path, clang, llmcc, env):
    """Three compiles in a row with a crashing opt open the breaker: the next compiles call it
    no more (plain clang, one warning each); a repaired opt is used again at once."""
    from llmcc.breaker import FAILURES_TO_OPEN

    opt, calls = _counting_opt(tmp_path, clang, "kill -SEGV $$")
    env["LLMCC_OPT"] = opt
    args = ["-Oz", "-c", "size.c"]
    plain = compile_outputs(clang, args, tree, env, ["size.o"])[2]
    for _ in range(FAILURES_TO_OPEN + 2):
        rc, stderr, tuned = compile_outputs(llmcc, args, tree, env, ["size.o"])
        assert rc == 0 and tuned == plain and stderr.count(b"llmcc: warning") == 1
    assert calls.read_text().count("call") == FAILURES_TO_OPEN
    assert b"not calling them again" in stderr
    assert log_outcomes(env) == ["miss"] * FAILURES_TO_OPEN + ["fallback"] * 2
    _counting_opt(tmp_path, clang, f'exec {opt_beside(clang)} "$@"')  # repaired in place
    rc, stderr, _ = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert rc == 0 and stderr == b""
    assert calls.read_text().count("call") > FAILURES_TO_OPEN
    assert log_outcomes(env)[-1] == "miss" and "tool_failure" not in log_events(env)[-1]


BUILD_ASSERT_C = """extern void build_bug_failed(void);
int f(int x) { if (x * 0 != 0) build_bug_failed(); return x + 1; }
"""


def test_a_list_refused_by_the_symbol_rule_is_a_decision_and_cached(tree, package_copy, llmcc,
                                                                    env):
    """A list whose object would need a new symbol is a fact about that list: cached."""
    (package_copy / "advisor" / "popular.json").write_text(
        json.dumps({"lists": [{"passes": "lower-expect"}]}))
    env["LLMCC_ADVISOR"] = "popular"  # the list above, whatever the default advisor
    (tree / "assert.c").write_text(BUILD_ASSERT_C)
    args = ["-Oz", "-c", "assert.c"]
    for _ in range(2):
        assert run([llmcc, *args], cwd=tree, env=env).returncode == 0
    first, second = log_events(env)
    assert "needs new symbols ['build_bug_failed']" in first["tried"][1]["error"]
    assert "tool_failure" not in first and second["outcome"] in ("hit", "direct_hit")


def test_opt_of_another_llvm_release_warns_once_and_uses_plain_clang(tree, tmp_path, clang,
                                                                     llmcc, env):
    env["LLMCC_OPT"] = script(tmp_path / "opt", 'echo "LLVM version 14.0.6"\n')
    args = ["-Oz", "-Wall", "-c", "size.c"]
    rc, expected, plain = compile_outputs(clang, args, tree, env, ["size.o"])
    rc, actual, tuned = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert rc == 0
    ours = [line for line in actual.decode().splitlines(keepends=True) if "llmcc" in line]
    assert len(ours) == 1
    assert ours[0].startswith("llmcc: warning: ") and "14.0.6" in ours[0]
    assert actual.decode().replace(ours[0], "", 1) == expected.decode()
    assert tuned["size.o"] == plain["size.o"]
    assert log_outcomes(env) == ["fallback"]


def test_unusable_cache_still_compiles_and_warns_once(tree, tmp_path, clang, llmcc, env):
    (tmp_path / "not-a-directory").write_text("")
    env["LLMCC_CACHE_DIR"] = str(tmp_path / "not-a-directory")
    args = ["-Oz", "-Wall", "-c", "size.c"]
    rc, expected, plain = compile_outputs(clang, args, tree, env, ["size.o"])
    rc, actual, tuned = compile_outputs(llmcc, args, tree, env, ["size.o"])
    assert rc == 0
    ours = [line for line in actual.decode().splitlines(keepends=True) if "llmcc" in line]
    assert len(ours) == 1 and "cache" in ours[0]
    assert actual.decode().replace(ours[0], "", 1) == expected.decode()
    assert read_object(tuned["size.o"]).size <= read_object(plain["size.o"]).size
    assert log_outcomes(env) == ["miss"]


def test_unknown_advisor_warns_and_uses_plain_clang(tree, clang, llmcc, env):
    env["LLMCC_ADVISOR"] = "oracle"
    args = ["-Oz", "-c", "quiet.c"]
    _, _, plain = compile_outputs(clang, args, tree, env, ["quiet.o"])
    rc, err, tuned = compile_outputs(llmcc, args, tree, env, ["quiet.o"])
    assert rc == 0 and tuned == plain
    assert err.decode().count("llmcc: warning:") == 1 and "oracle" in err.decode()


def test_bad_setting_warns_and_passes_through(tree, clang, llmcc, env):
    env["LLMCC_CANDIDATES"] = "lots"
    args = ["-Oz", "-c", "quiet.c"]
    _, _, plain = compile_outputs(clang, args, tree, env, ["quiet.o"])
    rc, err, tuned = compile_outputs(llmcc, args, tree, env, ["quiet.o"])
    assert rc == 0 and tuned == plain
    assert err.decode().startswith("llmcc: warning: candidates = 'lots' from environment")


# --- llmcc-ctl -----------------------------------------------------------------------------------

def _ctl(llmcc_ctl: str, env: dict[str, str], *args: str, cwd=None):
    return run([llmcc_ctl, *args], cwd=cwd, env=env)


def test_stats_count_the_compiles_made(tree, llmcc, llmcc_ctl, env):
    compile_outputs(llmcc, ["-Oz", "-c", "size.c"], tree, env, ["size.o"])       # miss
    compile_outputs(llmcc, ["-Oz", "-c", "size.c"], tree, env, ["size.o"])       # direct hit
    compile_outputs(llmcc, ["-Oz", "-c", "size.c", "-DX"], tree, env, ["size.o"])  # IR hit
    compile_outputs(llmcc, ["-O2", "-c", "quiet.c"], tree, env, ["quiet.o"])     # passthrough
    (tree / "broken.c").write_text("int f( {\n")
    compile_outputs(llmcc, ["-Oz", "-c", "broken.c"], tree, env, ["broken.o"])   # fallback
    done = _ctl(llmcc_ctl, env, "stats", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert {k: figures[k] for k in ("compiles", "intercepted", "hits_direct", "hits", "misses",
                                    "fallbacks", "passthrough")} == {
        "compiles": 5, "intercepted": 3, "hits_direct": 1, "hits": 1, "misses": 1,
        "fallbacks": 1, "passthrough": 1}
    sized = [e for e in log_events(env) if e.get("size") is not None]
    assert figures["baseline_bytes"] == sum(e["baseline_size"] for e in sized)
    assert figures["bytes"] == sum(e["size"] for e in sized)
    assert figures["bytes_saved"] == figures["baseline_bytes"] - figures["bytes"] >= 0
    text = _ctl(llmcc_ctl, env, "stats").stdout.decode()
    assert "compiles" in text and " 5\n" in text


def test_explain_reports_the_decision_for_an_object_and_its_source(tree, llmcc, llmcc_ctl, env):
    compile_outputs(llmcc, ["-Oz", "-c", "size.c", "-o", "out/size.o"], tree, env, [])
    event = log_events(env)[-1]
    for path in ("out/size.o", "size.c"):
        done = _ctl(llmcc_ctl, env, "explain", path, cwd=tree)
        assert done.returncode == 0, done.stderr
        text = done.stdout.decode()
        assert f"source:   {tree / 'size.c'}\n" in text
        assert f"key:      {event['key']}\n" in text
        assert (f"size:     {event['size']} bytes (clang: {event['baseline_size']}, "
                f"saved {event['baseline_size'] - event['size']})") in text
        assert text.count("  tried ") == len(event["tried"])
        assert "<clang pipeline>" in text
    missing = _ctl(llmcc_ctl, env, "explain", "nothing.o", cwd=tree)
    assert missing.returncode == 1 and b"no decision recorded" in missing.stderr


def test_config_shows_effective_values_and_origins(tmp_path, llmcc_ctl, env):
    (tmp_path / "config.toml").write_text('candidates = 2\nadvisor = "none"\n')
    env["LLMCC_ADVISOR"] = "popular"
    done = _ctl(llmcc_ctl, env, "config")
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.decode().splitlines()
             if not line.startswith("#")}
    assert lines["candidates"].split("#")[1].strip() == str(tmp_path / "config.toml")
    assert lines["candidates"].split("=")[1].split()[0] == "2"
    assert lines["advisor"].endswith("# environment LLMCC_ADVISOR")
    assert lines["timeout"].endswith("# default")
    assert lines["cache_dir"].split("=")[1].split()[0] == env["LLMCC_CACHE_DIR"]
    assert done.stdout.decode().startswith(f"# config file: {tmp_path / 'config.toml'}\n")


def test_bad_config_makes_ctl_fail_with_the_reason(tmp_path, llmcc_ctl, env):
    (tmp_path / "config.toml").write_text("candidates = -4\n")
    done = _ctl(llmcc_ctl, env, "config")
    assert done.returncode == 1
    assert b"candidates" in done.stderr and str(tmp_path / "config.toml").encode() in done.stderr


def test_id_names_what_decides_the_output(clang, llmcc_ctl, env):
    done = _ctl(llmcc_ctl, env, "id")
    assert done.returncode == 0
    line = done.stdout.decode().strip()
    version = run([clang, "--version"], cwd=None).stdout.decode().splitlines()[0]
    assert line.startswith("llmcc ")
    assert " advisor=forest:" in line and " candidates=3 min_gain=0.1 levels=sz disable=0 " in line
    assert line.endswith(version)
    env["LLMCC_CANDIDATES"] = "1"
    assert _ctl(llmcc_ctl, env, "id").stdout.decode().strip() != line


def test_doctor_passes_with_a_working_toolchain(llmcc_ctl, env):
    done = _ctl(llmcc_ctl, env, "doctor")
    assert done.returncode == 0, done.stdout
    lines = done.stdout.decode().splitlines()
    assert [line.split()[1] for line in lines] == ["clang", "opt", "LLVM", "fork", "cache",
                                                    "advisor", "model", "GPU"]
    assert all(line.startswith("ok ") for line in lines[:7])
    assert "libLLVM" in lines[2] and env["LLMCC_CACHE_DIR"] in lines[4]
    # the shipped model loads, with its candidate lists (101 in its metadata, less the 5 with
    # newgvn, the 2 with gvn-sink and the 8 with iroutliner, which llmcc never runs) and the
    # table that makes them cover each other
    assert "86 candidate pass lists, chosen to cover each other" in lines[6]


def test_doctor_notes_an_opt_without_llvms_library_beside_it(tmp_path, clang, llmcc_ctl, env):
    env["LLMCC_OPT"] = script(tmp_path / "opt", f'exec {opt_beside(clang)} "$@"\n')
    done = _ctl(llmcc_ctl, env, "doctor")
    assert done.returncode == 0, done.stdout
    assert done.stdout.decode().splitlines()[2] == (
        f"note LLVM worker: no libLLVM beside {tmp_path / 'opt'}; llvm-dis and opt run once per "
        "step instead")


def test_doctor_notes_a_missing_model_only_while_the_model_advisor_is_off(package_copy,
                                                                        llmcc_ctl, env):
    (package_copy / "advisor" / "model.gguf").unlink()
    lines = _ctl(llmcc_ctl, env, "doctor").stdout.decode().splitlines()
    assert lines[6].startswith("note model: ") and "does not exist" in lines[6]
    env["LLMCC_ADVISOR"] = "model"
    done = _ctl(llmcc_ctl, env, "doctor")
    assert done.returncode == 1
    assert done.stdout.decode().splitlines()[6].startswith("FAIL model: ")


def test_doctor_fails_on_a_mismatched_opt(tmp_path, llmcc_ctl, env):
    env["LLMCC_OPT"] = script(tmp_path / "opt", 'echo "LLVM version 14.0.6"\n')
    done = _ctl(llmcc_ctl, env, "doctor")
    assert done.returncode == 1
    assert any(line.startswith("FAIL toolchain") and "14.0.6" in line
               for line in done.stdout.decode().splitlines())


def test_clear_empties_the_cache_and_the_statistics(tree, llmcc, llmcc_ctl, env):
    compile_outputs(llmcc, ["-Oz", "-c", "size.c"], tree, env, ["size.o"])
    compile_outputs(llmcc, ["-Oz", "-c", "size.c"], tree, env, ["size.o"])
    done = _ctl(llmcc_ctl, env, "clear")
    assert done.returncode == 0
    removed = int(done.stdout.decode().split()[1])
    assert removed >= 3  # tools, direct manifest, decision, explain
    assert json.loads(_ctl(llmcc_ctl, env, "stats", "--json").stdout)["compiles"] == 0
    compile_outputs(llmcc, ["-Oz", "-c", "size.c"], tree, env, ["size.o"])
    assert log_outcomes(env) == ["miss", "direct_hit", "miss"]

"""The rule for what a candidate may change in a TU's interface (llmcc/interface.py): the table
itself, the rule on symbol sets, and real compiles where -Oz folded a call a candidate keeps."""

from __future__ import annotations

import os

import pytest
from conftest import frontend_ir, run_ok

from llmcc import interface
from llmcc.invocation import hosted
from llmcc.objfile import ObjectInfo, read_object
from llmcc.optimize import Evaluator
from llmcc.summary import available_externally
from llmcc.toolchain import check_tools

HOSTED = hosted(("-Oz",))
LIBM = ("sqrt", "sin", "cos", "exp", "log", "pow", "fabs", "floor", "ceil", "fmod", "round")


def _info(defined=(), undefined=(), comdat=()) -> ObjectInfo:
    return ObjectInfo(10, 0, 0, frozenset(defined) | frozenset(comdat), frozenset(undefined),
                      frozenset(comdat))


def _declares(*names: str):
    return lambda: frozenset(names)


def test_the_tables_give_a_reason_and_leave_libm_out():
    assert set(interface.ALWAYS) == {"memcpy", "memmove", "memset"}
    assert all(reason for reason in interface.ALWAYS.values())
    names = [name for names in interface.C_LIBRARY.values() for name in names]
    assert len(names) == len(set(names)), "a function is listed under two headers"
    assert not set(LIBM) & set(names)


@pytest.mark.parametrize("codegen, expected", [
    (("-Oz",), True), (("-Oz", "-fPIC", "-g"), True), (("-Oz", "-ffreestanding"), False),
    (("-Oz", "-fno-builtin"), False), (("-Oz", "-fno-builtin-memcmp"), False),
    (("-Oz", "-nostdlib"), False),
])
def test_hosted_means_no_flag_takes_the_c_library_away(codegen, expected):
    assert hosted(codegen) is expected


def test_equal_symbols_and_fewer_needs_are_accepted():
    baseline = _info({"f", "g"}, {"memcpy", "printf"})
    assert interface.refusal(_info({"f", "g"}, {"memcpy", "printf"}), baseline, True,
                             _declares()) is None
    assert interface.refusal(_info({"g", "f"}, {"printf"}), baseline, True, _declares()) is None


@pytest.mark.parametrize("candidate, missing", [
    (_info({"f"}), "missing ['g']"), (_info({"f", "g", "h"}), "extra ['h']"),
    (_info({"f"}, comdat={"g"}), "missing ['g']"),  # a strong definition turned weak
])
def test_a_strong_definition_that_appears_or_vanishes_is_refused(candidate, missing):
    reason = interface.refusal(candidate, _info({"f", "g"}), True, _declares())
    assert reason is not None and missing in reason


@pytest.mark.parametrize("name", ["memcpy", "memmove", "memset"])
@pytest.mark.parametrize("codegen", [("-Oz",), ("-Oz", "-ffreestanding")])
def test_memcpy_memmove_memset_are_always_allowed(name, codegen):
    assert interface.refusal(_info({"f"}, {name}), _info({"f"}), hosted(codegen),
                             _declares()) is None


@pytest.mark.parametrize("codegen, declared, allowed", [
    (("-Oz",), ("memcmp",), True),
    (("-Oz",), (), False),  # not declared by the TU: the source never calls it
    (("-Oz", "-ffreestanding"), ("memcmp",), False),
    (("-Oz", "-fno-builtin"), ("memcmp",), False),
    (("-Oz", "-nostdlib"), ("memcmp",), False),
], ids=["hosted", "undeclared", "freestanding", "no-builtin", "nostdlib"])
def test_a_c_library_function_is_allowed_only_hosted_and_declared(codegen, declared, allowed):
    reason = interface.refusal(_info({"f"}, {"memcmp"}), _info({"f"}), hosted(codegen),
                               _declares(*declared))
    assert (reason is None) is allowed


@pytest.mark.parametrize("name", ["sqrt", "build_bug_failed", "__stack_chk_fail", "_Znwm"])
def test_libm_helpers_and_anything_else_new_are_refused(name):
    reason = interface.refusal(_info({"f"}, {name}), _info({"f"}), True, _declares(name))
    assert reason == f"needs new symbols ['{name}']"


STRING_APPEND = "_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEE6appendEPKcm"
MY_INSTANCE = "_ZN2my3boxIiE3getEv"  # my::box<int>::get(), an extern template of the project's


@pytest.mark.parametrize("name, declared, bodies, cxx, hosted_, allowed", [
    (STRING_APPEND, (STRING_APPEND,), {STRING_APPEND: False}, True, True, True),
    (MY_INSTANCE, (MY_INSTANCE,), {MY_INSTANCE: False}, True, True, True),
    (STRING_APPEND, (STRING_APPEND,), {STRING_APPEND: True}, True, True, False),
    ("_ZSt20__throw_length_errorPKc", ("_ZSt20__throw_length_errorPKc",), {}, True, True, True),
    ("_ZSt20__throw_length_errorPKc", (), {}, True, True, False),
    ("_ZdlPvm", ("_ZdlPvm",), {}, True, True, True),
    ("__cxa_begin_catch", ("__cxa_begin_catch",), {}, True, True, True),
    ("_ZN2my6helperEv", ("_ZN2my6helperEv",), {}, True, True, False),
    ("__cxa_begin_catch", ("__cxa_begin_catch",), {}, True, False, False),
    ("_ZdlPvm", ("_ZdlPvm",), {}, False, True, False),
    ("helper", ("helper",), {"helper": False}, False, True, False),
    ("sqrtf", ("sqrtf",), {}, True, True, True),
    ("sqrtf", (), {}, True, True, False),
    ("_Unwind_Resume", ("__gxx_personality_v0",), {}, True, True, True),
    ("_Unwind_Resume", (), {}, True, True, False),
    ("_ZSt20__throw_length_errorPKc", ("_ZSt20__throw_length_errorPKc",), None, True, True,
     False),
], ids=["std-extern-template", "own-extern-template", "always-inline-body",
        "std-declared", "std-undeclared", "operator-delete", "cxa", "own-declared-only",
        "freestanding", "not-cxx", "c-inline", "libm-declared", "libm-undeclared",
        "unwind-with-eh", "unwind-without-eh", "ir-unreadable"])
def test_what_a_cxx_candidate_may_need_anew(name, declared, bodies, cxx, hosted_, allowed):
    reason = interface.refusal(_info({"f"}, {name}), _info({"f"}), hosted_, _declares(*declared),
                               lambda: bodies, cxx)
    assert (reason is None) is allowed


def test_comdat_definitions_may_come_and_go():
    baseline = _info({"api"}, comdat={"_Z4oncei", "DW.ref.__gxx_personality_v0"})
    more = _info({"api"}, comdat={"_Z4oncei", "_Z5twiceIiET_S0_", "DW.ref.__gxx_personality_v0"})
    fewer = _info({"api"})
    assert interface.refusal(more, baseline, True, _declares()) is None
    assert interface.refusal(fewer, baseline, True, _declares()) is None


def _evaluate(tmp_path, clang, source_name: str, source: str, passes: tuple[str, ...],
              *flags: str):
    source_path = tmp_path / source_name
    source_path.write_text(source)
    bitcode = tmp_path / "tu.bc"
    frontend_ir(clang, source_path, bitcode, *flags)
    evaluator = Evaluator(("-Oz", *flags), True, check_tools(clang, ""), str(bitcode),
                          str(tmp_path), 30,
                          language="c++" if source_name.endswith(".cc") else "c")
    baseline = evaluator.baseline()
    return baseline, evaluator.candidate(("always-inline", *passes))


MEMCMP = '#include <string.h>\nint same(const char *s) { return memcmp(s, s, 8); }\n'
POW = "#include <math.h>\ndouble square(double x) { return pow(x, 2.0); }\n"


def test_a_libc_call_minus_oz_folded_is_allowed_in_a_hosted_compile(tmp_path, clang):
    baseline, result = _evaluate(tmp_path, clang, "t.c", MEMCMP, ("lower-expect",))
    assert b"memcmp" not in baseline.object and result.error is None
    assert b"memcmp" in result.object


def test_a_libm_call_minus_oz_folded_is_still_refused(tmp_path, clang):
    _, result = _evaluate(tmp_path, clang, "t.c", POW, ("lower-expect",))
    assert result.error == "needs new symbols ['pow']"


def test_an_undeclared_helper_the_optimiser_must_remove_is_still_refused(tmp_path, clang):
    source = ("extern void build_bug_failed(void);\n"
              "int f(int x) { if (x * 0 != 0) build_bug_failed(); return x + 1; }\n")
    _, result = _evaluate(tmp_path, clang, "t.c", source, ("lower-expect",))
    assert result.error == "needs new symbols ['build_bug_failed']"


def test_cxx_candidate_keeping_inline_functions_is_accepted(tmp_path, clang):
    """-Oz inlines and drops the linkonce_odr definitions; a list without the inliner keeps
    them (more COMDAT definitions): the TU's interface is the same."""
    source = ("template <class T> T twice(T v) { return v + v; }\n"
              "inline int once(int x) { return x * 3; }\n"
              "int api(int x) { return twice(x) + once(x); }\n")
    baseline, result = _evaluate(tmp_path, clang, "t.cc", source, ("instsimplify",))
    assert result.error is None, result.error
    assert b"_Z4oncei" in result.object and b"_Z4oncei" not in baseline.object


REPEAT_CC = """#include <string>
std::string repeat(const std::string &piece, int times) {
    std::string whole;
    for (int i = 0; i < times; i++) whole += piece;
    return whole;
}
"""
REPEAT_MAIN = """#include <cstdio>
#include <string>
std::string repeat(const std::string &piece, int times);
int main() { std::string r = repeat("ab", 3); std::printf("%s %zu\\n", r.c_str(), r.size()); }
"""


def test_a_cxx_candidate_calling_the_library_instead_of_inlining_it_links_and_runs(
        tmp_path, clang, clangxx):
    """std::string's members are an extern template: -Oz inlines them, a list without the
    inliner calls them and keeps helpers that need the C++ runtime, all of which libstdc++
    defines. Accepted, and the program links and runs as it does with clang's object."""
    baseline, result = _evaluate(tmp_path, clang, "t.cc", REPEAT_CC, ("instsimplify",))
    assert result.error is None, result.error
    new = read_object(result.object).undefined - read_object(baseline.object).undefined
    assert any(name.startswith("_ZNSt7__cxx1112basic_string") for name in new), new
    (tmp_path / "main.cc").write_text(REPEAT_MAIN)
    outputs = []
    for name, blob in (("clang.o", baseline.object), ("candidate.o", result.object)):
        (tmp_path / name).write_bytes(blob)
        program = str(tmp_path / name.replace(".o", ""))
        run_ok([clangxx, "main.cc", name, "-o", program], tmp_path, os.environ)
        outputs.append(run_ok([program], tmp_path, os.environ))
    assert outputs == [b"ababab 6\n"] * 2


def test_libstdcxx_exports_every_function_std_string_has_for_inlining_only(
        tmp_path, clang, clangxx):
    """What the C++ rule relies on: each available_externally body of a TU using std::string,
    always-inline ones aside, is a function the libstdc++.so that clang++ links defines."""
    source = tmp_path / "t.cc"
    source.write_text(REPEAT_CC)
    frontend_ir(clang, source, tmp_path / "tu.bc")
    evaluator = Evaluator(("-Oz",), True, check_tools(clang, ""), str(tmp_path / "tu.bc"),
                          str(tmp_path), 30, language="c++")
    bodies = evaluator.bodies()
    elsewhere = {name for name, always_inline in bodies.items() if not always_inline}
    assert any(name.startswith("_ZNSt7__cxx1112basic_string") for name in elsewhere), bodies
    library = run_ok([clangxx, "-print-file-name=libstdc++.so"], tmp_path, os.environ).strip()
    nm = os.path.join(os.path.dirname(os.path.realpath(clang)), "llvm-nm")
    exported = set(run_ok([nm, "-D", "--defined-only", "--format=just-symbols",
                           os.path.realpath(library)], tmp_path, os.environ).decode().split())
    assert elsewhere <= {name.split("@")[0] for name in exported}, elsewhere - exported


def test_a_c_inline_definition_is_still_refused(tmp_path, clang):
    """C's `inline` (without extern) is available_externally in the IR too, but the external
    definition C requires may not exist where a project relies on -Oz inlining every call."""
    source = "inline int helper(int x) { return x * 3 + 1; }\n" \
             "int api(int x) { return helper(x) + helper(x + 1); }\n"
    baseline, result = _evaluate(tmp_path, clang, "t.c", source, ("instsimplify",))
    assert b"helper" not in baseline.object
    assert result.error == "needs new symbols ['helper']"


def test_available_externally_says_which_bodies_are_always_inline():
    text = """\
define available_externally i32 @_Z1fi(i32 noundef %0) #0 {
define available_externally i32 @_Z1gi(i32 noundef %0) #1 {
define available_externally i32 @"_Z1h\\01"(ptr dereferenceable(8) %0) alwaysinline {
define linkonce_odr i32 @_Z1ki(i32 noundef %0) #0 {
declare i32 @_Z1mi(i32 noundef)
attributes #0 = { mustprogress optsize "frame-pointer"="none" }
attributes #1 = { alwaysinline nounwind "target-cpu"="x86-64" }
"""
    assert available_externally(text) == {"_Z1fi": False, "_Z1gi": True, "_Z1h\\01": True}

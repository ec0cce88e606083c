"""The pass-list language: only vetted passes reach opt, always-inline always runs."""

from __future__ import annotations

import random
import subprocess

import pytest
from conftest import frontend_ir

from llmcc import passes
from llmcc.interface import refusal
from llmcc.objfile import ObjectInfo, read_object
from llmcc.toolchain import check_tools


def test_parse_accepts_spaces_and_commas_and_puts_always_inline_first():
    assert passes.parse("gvn, sroa<modify-cfg>  inline") == (
        "always-inline", "gvn", "sroa<modify-cfg>", "inline")


@pytest.mark.parametrize("text", [
    "", "gvn,-load=/tmp/evil.so", "function(gvn)", "internalize", "strip", "flatten-cfg",
    "gvn;rm -rf /", "default<O3>",
])
def test_parse_rejects_anything_outside_the_vocabulary(text):
    with pytest.raises(passes.PassListError):
        passes.parse(text)


def test_pipeline_wraps_each_pass_in_its_scope():
    pipeline = passes.to_pipeline(("always-inline", "licm", "indvars", "inline", "gvn"))
    assert pipeline == (f"{passes.PIPELINE_START},always-inline,function(loop-mssa(licm)),"
                        "function(loop(indvars)),cgscc(inline),function(gvn),"
                        f"{passes.PIPELINE_END}")


def test_every_candidate_runs_what_clangs_pipeline_always_runs(tmp_path, clang):
    """Clang's -O0 pipeline is what LLVM runs whatever the level (instrumentation, always-inline,
    coroutine lowering): a candidate's pipeline must contain it, in the same order."""
    source = tmp_path / "t.c"
    source.write_text("int f(int x) { return x + 1; }\n")
    done = subprocess.run([clang, "-O0", "-mllvm", "-print-pipeline-passes", "-c", str(source),
                           "-o", str(tmp_path / "t.o")], capture_output=True, text=True, check=True)
    always = done.stdout.strip().replace(",function(annotation-remarks)", "")  # remarks only
    assert always == f"{passes.PIPELINE_START},always-inline,{passes.PIPELINE_END}"
    assert passes.to_pipeline(("always-inline",)) == always


def test_instrumented_functions_keep_their_calls_in_every_candidate(tmp_path, clang):
    """-finstrument-functions lives in an attribute that clang's pipeline turns into calls; a
    list without that pass used to drop them and count the loss as a saving."""
    source = tmp_path / "t.c"
    source.write_text("extern int ext(int);\nint g(int x) { return ext(x) * 3; }\n")
    bitcode, optimised = tmp_path / "t.bc", tmp_path / "o.bc"
    frontend_ir(clang, source, bitcode, "-finstrument-functions")
    opt = check_tools(clang, "").opt
    for listed in [("always-inline",), ("always-inline", "inline", "gvn", "globalopt")]:
        subprocess.run([opt, f"-passes={passes.to_pipeline(listed)}", str(bitcode), "-o",
                        str(optimised)], check=True)
        done = subprocess.run([clang, "-c", "-Oz", "-Xclang", "-disable-llvm-passes",
                               str(optimised), "-o", "-"], capture_output=True, check=True)
        assert {"__cyg_profile_func_enter", "__cyg_profile_func_exit"} <= read_object(
            done.stdout).undefined


def test_text_round_trips():
    rng = random.Random(3)
    for _ in range(50):
        listed = passes.random_list(rng)
        assert passes.parse(passes.to_text(listed)) == listed
        assert listed[0] == passes.REQUIRED_FIRST


def test_every_vetted_pass_runs_through_opt(tmp_path, clang):
    """Each vocabulary entry is a valid opt-19 pipeline element on real IR."""
    source = tmp_path / "t.c"
    source.write_text(
        "static inline __attribute__((always_inline)) int sq(int x){return x*x;}\n"
        "int g[64]; int f(int n){int s=0; for(int i=0;i<n;i++) s+=sq(g[i]); return s;}\n"
        "int h(int *p, int n){for(int i=0;i<n;i++) p[i]=0; return f(n);}\n")
    bitcode = tmp_path / "t.bc"
    frontend_ir(clang, source, bitcode)
    opt = check_tools(clang, "").opt
    pipeline = ",".join(passes.VOCABULARY.values())
    done = subprocess.run([opt, f"-passes={pipeline}", str(bitcode), "-o", str(tmp_path / "o.bc")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("excluded", ["internalize", "internalize,globaldce"])
def test_excluded_passes_change_what_the_object_exports(tmp_path, clang, excluded):
    """The evidence for leaving these out: with them a TU's exported functions become local
    (or vanish), so its object no longer links with the rest of the program."""
    source = tmp_path / "t.c"
    source.write_text("int helper(int x) { return x * 3; }\nint api(int y) { return y + 1; }\n")
    bitcode, optimised = tmp_path / "t.bc", tmp_path / "o.bc"
    frontend_ir(clang, source, bitcode)
    opt = check_tools(clang, "").opt

    def object_after(pipeline: str) -> ObjectInfo:
        subprocess.run([opt, f"-passes={pipeline}", str(bitcode), "-o", str(optimised)],
                       check=True)
        done = subprocess.run([clang, "-c", "-Oz", "-Xclang", "-disable-llvm-passes",
                               str(optimised), "-o", "-"], capture_output=True, check=True)
        return read_object(done.stdout)

    vetted = object_after("always-inline")
    assert {"helper", "api"} <= vetted.defined
    assert refusal(object_after(f"always-inline,{excluded}"), vetted, True,
                   frozenset).startswith("defines different symbols")

"""Every option llmcc intercepts means in llmcc's object what it means in clang's: the flag sweep
over clang's whole option list, a proof that the sweep catches a dropped effect, and the flags a
user reported or that were checked by hand, end to end through the `llmcc` command."""

from __future__ import annotations

import pytest
from conftest import run

from llmcc import passes
from llmcc.reliability import flag_sweep
from llmcc.toolchain import check_tools


@pytest.fixture(scope="module")
def tools(clang):
    return check_tools(clang, "")


def test_every_intercepted_flag_keeps_its_effect_in_every_candidate(tools, capsys):
    results = flag_sweep.sweep(tools, jobs=2)
    report = flag_sweep.summary(results)
    with capsys.disabled():
        print(f"\nflag sweep: {report['spellings']} intercepted spellings, {report['checked']} "
              f"accepted by clang-19 and checked, {report['with_effect']} with a visible effect, "
              f"{len(report['lost'])} lost")
    assert report["lost"] == []
    assert report["checked"] > 2000, "clang's option list should give thousands of spellings"
    kept = {r.flag for r in results if r.status == "kept"}
    assert {"-finstrument-functions", "-fstack-size-section", "-fbasic-block-address-map",
            "-finstrument-functions-after-inlining", "-fstack-protector-all"} <= kept


def test_every_list_of_the_sweep_is_one_a_compile_may_run():
    """A list with a pass llmcc never runs is refused whole, and the sweep skips a refused list
    as the symbol rule's: the other passes of such a list would go unchecked."""
    assert not any(passes.never_run(names) for names in flag_sweep.LISTS)
    assert {"hotcoldsplit", "mergefunc", "attributor-light"} <= {
        name for names in flag_sweep.LISTS for name in names}


def test_the_sweep_catches_a_candidate_that_drops_instrumentation(tools, monkeypatch):
    """Without the entry/exit instrumenter in every candidate (the bug a user found), the sweep
    reports -finstrument-functions as lost in every list."""
    monkeypatch.setattr(passes, "PIPELINE_START", "function(lower-expect)")
    results = flag_sweep.sweep(tools, jobs=2, flags=["-finstrument-functions"])
    assert {r.status for r in results} == {"lost"}
    missing = [m for r in results for lost in r.lost for m in lost["missing"]]
    assert "undefined __cyg_profile_func_enter" in missing


def test_effect_is_what_the_flag_adds_and_must_be_kept_everywhere():
    effect = flag_sweep.effect_of({"undefined mcount", "section .text"}, {"section .text"},
                                  {"noredzone", "nounwind"}, {"nounwind"})
    assert effect == {"undefined mcount", "attribute noredzone"}
    ir = ('define i32 @f() #0 {\n}\ndefine i32 @g() #1 {\n}\n'
          'attributes #0 = { noredzone nounwind }\nattributes #1 = { nounwind }\n')
    assert flag_sweep.missing_from(effect, {"undefined mcount"}, ir) == [
        "attribute noredzone (on g)"]
    assert flag_sweep.missing_from(effect, set(), None) == ["undefined mcount"]


@pytest.mark.parametrize("flag", [
    "-pg", "-finstrument-functions", "-finstrument-functions-after-inlining",
    "-fpatchable-function-entry=4,2", "-fstack-protector-all", "-fcf-protection=full",
    "-fstack-size-section", "-fbasic-block-address-map",
])
def test_flag_keeps_its_effect_through_llmcc(tmp_path, clang, llmcc, env, flag):
    """What the flag adds to plain clang's object is in llmcc's object too (k = 10 lists)."""
    (tmp_path / "probe.c").write_text(flag_sweep.PROBE_C)
    env["LLMCC_CANDIDATES"] = "10"
    objects = {}
    for name, program, flags in [("plain", clang, []), ("flag", clang, [flag]),
                                 ("llmcc", llmcc, [flag])]:
        done = run([program, "-Oz", "-c", "probe.c", *flags, "-o", f"{name}.o"], cwd=tmp_path,
                   env=env)
        assert done.returncode == 0, done.stderr
        objects[name] = flag_sweep.object_features((tmp_path / f"{name}.o").read_bytes())
    effect = objects["flag"] - objects["plain"]
    assert effect, f"{flag} should change plain clang's object"
    assert effect <= objects["llmcc"]

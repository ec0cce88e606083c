"""Reading an LLM Compiler-style answer into llmcc's pass vocabulary (LLMCC_PROMPT=llm-compiler)."""

from __future__ import annotations

import pytest

from llmcc.advisor import llm_compiler
from llmcc.passes import VOCABULARY, parse


@pytest.mark.parametrize("answer, expected", [
    (("Run passes `-p 'module(default<Oz>),function(gvn,instcombine<no-verify-fixpoint>)'` "
      "to reduce the object size"), "default<Oz> gvn instcombine<no-verify-fixpoint>"),
    ("-reg2mem -instcombine -gvn -simplifycfg -mem2reg",
     "instcombine<no-verify-fixpoint> gvn simplifycfg mem2reg"),
    ("opt -p 'cgscc(inline),function(sroa<modify-cfg>,loop(loop-deletion))'",
     "inline sroa<modify-cfg> loop-deletion"),
    ("-p 'function(dce)'\n\n<code>define i32 @f() {\n  %gvn = add i32 1, 2\n  ret i32 0\n}</code>",
     "dce"),  # the forecast IR after the list is not read
])
def test_answers_are_read_into_the_vocabulary(answer, expected):
    assert llm_compiler.passes_of_answer(answer) == parse(expected)


@pytest.mark.parametrize("answer", [
    "", "I cannot help with that.", "-p 'module(internalize,strip)' $(touch pwned) -load=x.so",
])
def test_answers_without_a_vocabulary_pass_give_nothing(answer):
    assert llm_compiler.passes_of_answer(answer) is None


def test_parameterless_names_map_only_to_a_unique_vocabulary_entry():
    assert llm_compiler.BY_BASE_NAME["sroa"] == "sroa<modify-cfg>"
    assert "loop-rotate" not in llm_compiler.BY_BASE_NAME  # two entries: left out
    assert set(llm_compiler.BY_BASE_NAME.values()) <= set(VOCABULARY)


def test_prompt_is_metas_format_to_the_character():
    assert llm_compiler.prompt("define void @f() {\n  ret void\n}\n") == (
        "[INST] Tell me how to optimize this LLVM-IR for object file size:\n\n<code>define void "
        "@f() {\n  ret void\n}\n</code> [/INST]")

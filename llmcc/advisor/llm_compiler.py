"""Meta's LLM Compiler FTD models (or any model trained the same way) as the model advisor.

With `LLMCC_PROMPT=llm-compiler`, the model reads the TU's unoptimised IR in the prompt those
models were fine-tuned on, to the character, and answers in text: an `opt` pass pipeline (then
its forecast of the result, which is ignored). The pass names of that answer are read into
llmcc's vocabulary, whether written as a pipeline (`-p 'module(default<Oz>),function(gvn)'`)
or as legacy flags (`-gvn -instcombine`); anything else is dropped, and so is a pass that must
never run (llmcc.passes.NEVER_RUN), so such a model can only ever propose a list
`llmcc.passes.parse` accepts and llmcc may try.
"""

from __future__ import annotations

import re

from llmcc.passes import NEVER_RUN, VOCABULARY, PassList, validate

PROMPT = ("[INST] Tell me how to optimize this LLVM-IR for object file size:\n\n"
          "<code>{ir}</code> [/INST]")
ANSWER_TOKENS = 256  # a pass list and no more: the forecast IR that follows is not needed
_PASS_NAME = re.compile(r"[A-Za-z][\w-]*(?:<[^<>\s]*>)?")
_MODULE_ID = re.compile(r"^; ModuleID = '[^'\n]*'$", re.MULTILINE)
_SOURCE_FILENAME = re.compile(r'^source_filename = "([^"\n]*)"$', re.MULTILINE)


def _by_base_name() -> dict[str, str]:
    """A vocabulary entry by its name without parameters, where only one entry has it
    (`instcombine` is `instcombine<no-verify-fixpoint>`; `loop-rotate` has two and is left)."""
    bases: dict[str, list[str]] = {}
    for name in VOCABULARY:
        bases.setdefault(name.split("<")[0], []).append(name)
    return {base: names[0] for base, names in bases.items() if len(names) == 1}


BY_BASE_NAME = _by_base_name()


def prompt(ir: str) -> str:
    """Meta's prompt holding `ir` as `clang -S -emit-llvm` writes it. llvm-dis names the module
    after the file it read, a compile's temporary `tu.bc`, clang after the source file: a random
    name in the prompt would change the answer from one compile of the TU to the next."""
    source = _SOURCE_FILENAME.search(ir)
    if source is not None:
        ir = _MODULE_ID.sub(lambda _: f"; ModuleID = '{source.group(1)}'", ir, count=1)
    return PROMPT.format(ir=ir)


def passes_of_answer(text: str) -> PassList | None:
    """The vocabulary passes an answer names, in order; None if it names none."""
    names = []
    for word in _PASS_NAME.findall(text.split("<code>")[0]):
        name = word if word in VOCABULARY else BY_BASE_NAME.get(word.split("<")[0])
        if name is not None and name not in NEVER_RUN:
            names.append(name)
    return validate(names) if names else None

"""The pass-list language: a vetted vocabulary, parsing, validation, printing for `opt`.

A pass list is a tuple of vocabulary names. Every name maps to one `opt -passes` element
with the nesting it needs (`function(loop-mssa(licm))`), so a list can never carry anything
outside the vocabulary to `opt`: no plugins, no arbitrary pipeline text. Lists arriving from a
data file, a cache, a model or a server are untrusted and go through `parse`.

Excluded on purpose: passes that change what a TU exports (internalize, strip*, globaldce on
external symbols; `test_excluded_passes_change_what_the_object_exports` shows it) and
flatten-cfg, which crashes opt-19 on some inputs (../shared/NOTES.md). A pass caught
changing what a program computes, or giving different code for the same list from run to run,
stays readable (data files that name it still load) but is never run: NEVER_RUN.
"""

from __future__ import annotations

# name -> how `opt -passes` spells it. Scope is explicit so each pass runs where it belongs.
_FUNCTION = (
    "mem2reg", "sroa<modify-cfg>", "early-cse", "early-cse<memssa>", "gvn", "newgvn",
    "instcombine<no-verify-fixpoint>", "aggressive-instcombine", "instsimplify", "simplifycfg",
    "simplifycfg<hoist-common-insts;sink-common-insts>", "reassociate", "jump-threading",
    "correlated-propagation", "dse", "mldst-motion", "sccp", "adce", "bdce", "dce",
    "tailcallelim", "div-rem-pairs", "float2int", "lower-expect", "memcpyopt",
    "constraint-elimination", "gvn-hoist", "gvn-sink", "sink", "consthoist", "mergeicmps",
    "lower-constant-intrinsics", "infer-alignment", "loop-sink", "vector-combine",
)
_LOOP_MSSA = ("licm", "loop-simplifycfg", "simple-loop-unswitch")
_LOOP = (
    "loop-rotate<header-duplication;prepare-for-lto>", "loop-rotate<no-header-duplication>",
    "loop-deletion", "indvars", "loop-idiom", "loop-instsimplify", "loop-reduce", "loop-flatten",
)
_CGSCC = ("inline", "function-attrs", "argpromotion")
_MODULE = (
    "always-inline", "ipsccp", "deadargelim", "mergefunc", "constmerge",
    "called-value-propagation", "globalopt", "hotcoldsplit", "iroutliner",
    "rpo-function-attrs", "attributor-light",
    "default<Oz>",  # LLVM's whole -Oz pipeline as one step: where a search starts from
)

# Passes llmcc never runs, each with its evidence: caught miscompiling
# (llmcc.reliability.differential, or a real project's own tests; docs/reliability.md), or
# giving different IR for the same list and TU from run to run, which would make a build's
# objects depend on the machine's memory layout (docs/reliability.md, "Reproducible
# objects"). No list containing one is generated, advised or tried.
NEVER_RUN: dict[str, str] = {
    "newgvn": "LLVM 19's NewGVN miscompiles (after default<Oz> a csmith program that prints "
              "its checksum in 2 ms loops forever: differential --seed 5, program 144)",
    "gvn-sink": "LLVM 19's GVNSink orders values by their addresses in memory (fixed upstream "
                "after 19, llvm-project #205952): the same list gives different IR from run "
                "to run (bench/worker_determinism.py)",
    "iroutliner": "LLVM 19's IROutliner changed what pcre2 10.42 computes (its JIT compiler, "
                  "pcre2_jit_compile.c at -Os -fPIC, built with `always-inline default<Oz> "
                  "iroutliner` fails 3 checks of pcre2_jit_test that pass at -Os, at -Oz and "
                  "with that list less iroutliner: tests/test_suites.py)",
}

VOCABULARY: dict[str, str] = {
    **{name: f"function({name})" for name in _FUNCTION},
    **{name: f"function(loop-mssa({name}))" for name in _LOOP_MSSA},
    **{name: f"function(loop({name}))" for name in _LOOP},
    **{name: f"cgscc({name})" for name in _CGSCC},
    **{name: name for name in _MODULE},
}

# Clang runs always-inline even at -O0: every candidate does too, so no list wins bytes by
# ignoring `always_inline`.
REQUIRED_FIRST = "always-inline"

# What clang's pipeline runs at every level, -O0 included (its -O0 pipeline, compared by
# `test_every_candidate_runs_what_clangs_pipeline_always_runs`): the entry/exit instrumenter
# first, which turns `-finstrument-functions` into calls, and coroutine lowering last. A list
# without them would silently drop the user's instrumentation or leave coroutines unlowered.
PIPELINE_START = "function(ee-instrument<>)"
PIPELINE_END = "coro-cond(coro-early,cgscc(coro-split),coro-cleanup,globaldce)"

PassList = tuple[str, ...]

# The search's first seed: clang's own -Oz pipeline, to be improved on by mutation.
OZ_PIPELINE: tuple[str, ...] = (REQUIRED_FIRST, "default<Oz>")


class PassListError(ValueError):
    """A pass list names something outside the vocabulary or is malformed."""


def parse(text: str) -> PassList:
    """`"sroa<modify-cfg> gvn inline"` (spaces or commas) -> a validated PassList."""
    names = tuple(part for part in text.replace(",", " ").split() if part)
    return validate(names)


def validate(names: PassList | list[str]) -> PassList:
    names = tuple(names)
    if not names:
        raise PassListError("empty pass list")
    unknown = [name for name in names if name not in VOCABULARY]
    if unknown:
        raise PassListError(f"not in the vocabulary: {', '.join(unknown[:5])}")
    if names[0] != REQUIRED_FIRST:
        names = (REQUIRED_FIRST, *names)
    return names


def to_text(passes: PassList) -> str:
    """The form stored in data files and logs, readable and re-parsable."""
    return " ".join(passes)


def to_pipeline(passes: PassList) -> str:
    """The `opt -passes=` argument for a validated list, inside what clang always runs."""
    return ",".join([PIPELINE_START, *(VOCABULARY[name] for name in validate(passes)),
                     PIPELINE_END])


def never_run(passes: PassList) -> str | None:
    """Why `passes` must never run (a pass of it is in NEVER_RUN), or None."""
    for name in passes:
        if name in NEVER_RUN:
            return f"{name}: {NEVER_RUN[name]}"
    return None


# What a search draws from: the vocabulary without the passes never run.
DRAWABLE = tuple(sorted(name for name in VOCABULARY if name not in NEVER_RUN))


def random_list(rng, min_length: int = 3, max_length: int = 16) -> PassList:
    """A uniformly drawn list (after always-inline): the starting point of any search."""
    length = rng.randint(min_length, max_length)
    return validate([rng.choice(DRAWABLE) for _ in range(length)])

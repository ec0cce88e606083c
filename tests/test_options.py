"""The options table itself (ccache's compopt test): sorted, consistent, and what lookup() says."""

from __future__ import annotations

import pytest

from llmcc.options import FAMILIES, LANGUAGES, OPT_LEVELS, OPTIONS, SOURCE_LANGUAGES, Opt, lookup

# Bits that only make sense when llmcc acts on the option: one of them beside TOO_HARD is a
# contradiction (the call never reaches the code that would act on it).
_ACTED_ON = Opt.OUTPUT | Opt.COMPILE_ONLY | Opt.LANGUAGE | Opt.OPT_LEVEL

# Options whose value may only be glued on (`-Wl,…` style), never given as the next argument.
# None today; an entry here documents why it is not TAKES_ARG.
_CONCAT_ONLY: dict[str, str] = {}


def test_options_table_is_sorted():
    assert list(OPTIONS) == sorted(OPTIONS)


def test_families_table_is_sorted():
    assert list(FAMILIES) == sorted(FAMILIES)


@pytest.mark.parametrize("table", [OPTIONS, FAMILIES], ids=["options", "families"])
def test_no_too_hard_option_is_also_acted_on(table):
    contradictions = {name for name, flags in table.items()
                      if flags & Opt.TOO_HARD and flags & _ACTED_ON}
    assert contradictions == set()


def test_every_glued_value_option_also_takes_a_separate_value_or_is_documented():
    concat = {name for name, flags in OPTIONS.items() if flags & Opt.TAKES_CONCAT_ARG}
    assert concat, "the table lost its glued-value options"
    undocumented = {name for name in concat
                    if not OPTIONS[name] & Opt.TAKES_ARG and name not in _CONCAT_ONLY}
    assert undocumented == set()


def test_families_never_claim_a_separate_value():
    """A family matches by prefix, so the value is always glued: TAKES_ARG would eat an input."""
    assert {name for name, flags in FAMILIES.items() if flags & Opt.TAKES_ARG} == set()


def test_depfile_options_are_preprocessor_only():
    """Depfile flags must never reach the IR compile, where they would write a second depfile."""
    for name, flags in OPTIONS.items():
        if flags & Opt.DEPFILE:
            assert flags & Opt.AFFECTS_CPP, name


def test_every_optimisation_level_is_an_option_family_member():
    for spelling in OPT_LEVELS:
        assert lookup(spelling)[0] & Opt.OPT_LEVEL, spelling


def test_source_languages_are_ones_llmcc_accepts():
    assert set(SOURCE_LANGUAGES.values()) <= set(LANGUAGES.values())


@pytest.mark.parametrize("arg, name, value", [
    ("-DX=1", "-D", "X=1"),
    ("-DNAME", "-D", "NAME"),
    ("-UNDEBUG", "-U", "NDEBUG"),
    ("-Iinc", "-I", "inc"),
    ("-I../a/b", "-I", "../a/b"),
    ("-ofoo.o", "-o", "foo.o"),
    ("-MFx.d", "-MF", "x.d"),
    ("-MTtarget", "-MT", "target"),
    ("-MQ$(obj)", "-MQ", "$(obj)"),
    ("-xc++", "-x", "c++"),
    ("-isystem/usr/x", "-isystem", "/usr/x"),
    ("-includeconfig.h", "-include", "config.h"),
    ("-lm", "-l", "m"),
])
def test_lookup_splits_a_glued_value_from_its_option(arg, name, value):
    assert lookup(arg) == (OPTIONS[name], value)


@pytest.mark.parametrize("arg", ["-D", "-I", "-o", "-MF", "-MT", "-x", "-include", "-isystem"])
def test_lookup_of_a_bare_value_option_has_no_glued_value(arg):
    flags, value = lookup(arg)
    assert flags == OPTIONS[arg] and flags & Opt.TAKES_ARG
    assert value is None


def test_longest_glued_prefix_wins():
    """`-isystem-after` is its own option, not `-isystem` with the value `-after`."""
    assert lookup("-isystem-afterdir") == (OPTIONS["-isystem-after"], "dir")
    assert lookup("-iwithprefixbeforedir") == (OPTIONS["-iwithprefixbefore"], "dir")


def test_exact_spelling_wins_over_a_glued_prefix():
    """`-MD` is not `-M` with the value `D`, and `-MMD` is not `-MM`."""
    assert lookup("-MD") == (OPTIONS["-MD"], None)
    assert lookup("-MMD") == (OPTIONS["-MMD"], None)
    assert not lookup("-MD")[0] & Opt.TOO_HARD
    assert lookup("-M")[0] & Opt.TOO_HARD


@pytest.mark.parametrize("arg", [
    "-fsanitize=address", "-fsanitize-recover=all", "-fprofile-instr-generate",
    "-flto", "-flto=thin", "-fmodules", "-fplugin=x.so", "-Wa,--noexecstack",
    "-Wp,-MD,x.d", "-Wp,-MMD,x.d", "-Wp,-DX,-MMD,x.d", "-Wp,-D,X", "-Wp,-D", "-Wp,", "-Wp,-I,inc",
    "-Wp,-DX,", "-gsplit-dwarf", "-m32", "--target=aarch64-linux-gnu", "-dM",
    "-print-search-dirs", "-ftime-trace", "-fembed-bitcode",
])
def test_family_members_llmcc_cannot_handle_are_too_hard(arg):
    assert lookup(arg) == (Opt.TOO_HARD, None)


@pytest.mark.parametrize("arg", ["-Wp,-D_FORTIFY_SOURCE=2", "-Wp,-D_GLIBCXX_ASSERTIONS",
                                 "-Wp,-UNDEBUG,-DX=1"])
def test_macro_definitions_through_wp_are_preprocessor_options(arg):
    assert lookup(arg) == (Opt.AFFECTS_CPP, None)


@pytest.mark.parametrize("arg", [
    "-fno-common", "-ffunction-sections", "-fno-sanitize-anything-that-is-not-a-prefix",
    "-Wall", "-Wextra", "-Werror", "-Wno-unused", "-Wl,--gc-sections", "-g", "-g3",
    "-march=native", "-mno-red-zone", "-std=c11", "--std=c++17",
])
def test_harmless_family_members_are_not_too_hard(arg):
    flags, value = lookup(arg)
    assert not flags & Opt.TOO_HARD
    assert value is None


def test_longest_family_prefix_wins():
    assert lookup("-Wa,-x")[0] == FAMILIES["-Wa,"]
    assert lookup("-Wall")[0] == FAMILIES["-W"]
    assert lookup("-fsanitize=address")[0] == FAMILIES["-fsanitize"]
    assert lookup("-fno-common")[0] == FAMILIES["-f"]
    assert lookup("-m32")[0] == FAMILIES["-m32"]
    assert lookup("-m64")[0] == FAMILIES["-m"]


@pytest.mark.parametrize("arg", ["-Os", "-Oz", "-O2", "-O", "-Ofast"])
def test_optimisation_levels_are_found_through_the_family(arg):
    assert lookup(arg) == (Opt.OPT_LEVEL, None)


@pytest.mark.parametrize("arg", ["-zfoo", "-e", "-s", "--frobnicate",
                                 "-pie", "-nologo", "-Zs"])
def test_unknown_options_are_too_hard(arg):
    assert lookup(arg) == (Opt.TOO_HARD, None)


def test_pic_options_are_marked_pic():
    for name in ("-fPIC", "-fpic", "-fPIE", "-fpie", "-fno-PIC", "-fno-pic", "-fno-PIE",
                 "-fno-pie"):
        assert lookup(name)[0] & Opt.PIC, name


@pytest.mark.parametrize("arg", ["-objcmt-migrate-literals", "-objcmt-allowlist-dir-path=x",
                                 "-object-file-name=x.o", "-object"])
def test_options_that_only_begin_like_o_are_not_an_output(arg):
    """Clang's longest match makes these options of their own, never `-o` with a glued name."""
    assert lookup(arg) == (Opt.TOO_HARD, None)
    assert lookup("-objs/x.o") == (OPTIONS["-o"], "bjs/x.o")


@pytest.mark.parametrize("arg", [
    "-fwasm-exceptions", "-fsjlj-exceptions", "-fseh-exceptions", "-frecord-command-line",
    "-frecord-gcc-switches", "-grecord-command-line", "-femit-compact-unwind-non-canonical",
    "-foptimization-record-passes=inline", "-foptimization-record-file=r.yaml",
    "-gen-reproducer", "-gen-cdb-fragment-path",
])
def test_options_that_would_make_llmcc_differ_from_clang_are_too_hard(arg):
    """Found by comparing every -f/-m/-g option clang-19 lists, alone, with plain clang."""
    assert lookup(arg) == (Opt.TOO_HARD, None)

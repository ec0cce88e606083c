"""classify(): which calls llmcc takes over, what it derives from them, and why it lets go."""

from __future__ import annotations

import pytest

from llmcc.invocation import Compile, Passthrough, classify, codegen_args, expand_response_files

SZ = frozenset("sz")


def compile_of(*args: str, levels: frozenset[str] = SZ) -> Compile:
    inv = classify(list(args), levels)
    assert isinstance(inv, Compile), inv
    return inv


def reason_of(*args: str, levels: frozenset[str] = SZ) -> str:
    inv = classify(list(args), levels)
    assert isinstance(inv, Passthrough), inv
    return inv.reason


# --- what is intercepted ---------------------------------------------------------------------

def test_plain_compile_at_oz_is_intercepted():
    inv = compile_of("-Oz", "-c", "a.c")
    assert (inv.source, inv.language, inv.output, inv.level) == ("a.c", "c", "a.o", "z")
    assert inv.depfile is None
    assert inv.frontend_base == ("-Oz", "-c", "a.c")


def test_compile_at_os_is_intercepted_with_explicit_output():
    inv = compile_of("-c", "-Os", "src/a.c", "-o", "out/a.o")
    assert (inv.output, inv.level) == ("out/a.o", "s")
    assert "-o" not in inv.frontend_base and "out/a.o" not in inv.frontend_base


def test_glued_output_is_understood():
    inv = compile_of("-Oz", "-c", "a.c", "-oout.o")
    assert inv.output == "out.o"
    assert "-oout.o" not in inv.frontend_base


def test_default_output_is_the_source_stem_in_the_current_directory():
    assert compile_of("-Oz", "-c", "deep/dir/name.file.c").output == "name.file.o"


@pytest.mark.parametrize("source, language", [
    ("a.c", "c"), ("a.cc", "c++"), ("a.cpp", "c++"), ("a.cxx", "c++"), ("a.C", "c++"),
    ("a.i", "c"), ("a.ii", "c++"),
])
def test_language_follows_the_extension(source, language):
    assert compile_of("-Oz", "-c", source).language == language


def test_x_language_overrides_the_extension_until_x_none():
    assert compile_of("-Oz", "-c", "-x", "c++", "a.c").language == "c++"
    assert compile_of("-Oz", "-c", "-xc++", "a.c").language == "c++"
    assert compile_of("-Oz", "-c", "-x", "c++", "-x", "none", "a.c").language == "c"


def test_last_optimisation_level_wins():
    assert compile_of("-O2", "-Oz", "-c", "a.c").level == "z"
    assert reason_of("-Oz", "-O2", "-c", "a.c").startswith("optimisation level -O2")


def test_levels_setting_decides_which_levels_are_taken_over():
    assert compile_of("-O2", "-c", "a.c", levels=frozenset("2sz")).level == "2"
    assert compile_of("-O", "-c", "a.c", levels=frozenset("1")).level == "1"


@pytest.mark.parametrize("args, pic", [
    ((), True),  # Debian's clang defaults to PIE
    (("-fno-pic",), False),
    (("-fno-PIE",), False),
    (("-fno-pic", "-fPIC"), True),
    (("-fPIC", "-fno-pie"), False),
])
def test_last_relocation_model_option_wins(args, pic):
    assert compile_of("-Oz", "-c", *args, "a.c").pic is pic


# --- what is passed through, and why ---------------------------------------------------------

@pytest.mark.parametrize("args, reason", [
    (("-Oz", "a.c"), "not a compile to an object (-c)"),
    (("-Oz", "-S", "a.c"), "option -S is not handled"),
    (("-Oz", "-E", "a.c"), "option -E is not handled"),
    (("-Oz", "-c", "a.c", "b.c"), "2 source files"),
    (("-Oz", "-c"), "0 source files"),
    (("-Oz", "-c", "a.c", "-o", "-"), "writes the object to standard output"),
    (("-Oz", "-c", "-x", "c", "-"), "reads the source from standard input"),
    (("-O2", "-c", "a.c"), "optimisation level -O2 is not optimised by llmcc"),
    (("-c", "a.c"), "optimisation level -O0 is not optimised by llmcc"),
    (("-Ofast", "-c", "a.c"), "optimisation level -Ofast is not optimised by llmcc"),
    (("-Og", "-c", "a.c"), "optimisation level -Og is not optimised by llmcc"),
    (("-O9", "-c", "a.c"), "optimisation level -O9 is not handled"),
    (("-Oz", "-c", "a.s"), "input 'a.s' is not a C or C++ source"),
    (("-Oz", "-c", "-x", "assembler", "a.c"), "language 'assembler' is not C or C++"),
    (("-Oz", "-c", "a.c", "-flto"), "option -flto is not handled"),
    (("-Oz", "-c", "a.c", "-fsanitize=address"), "option -fsanitize=address is not handled"),
    (("-Oz", "-c", "a.c", "-Wa,--noexecstack"), "option -Wa,--noexecstack is not handled"),
    (("-Oz", "-c", "a.c", "--frobnicate"), "option --frobnicate is not handled"),
    (("-Oz", "-c", "a.c", "-MM"), "option -MM is not handled"),
    (("-Oz", "-c", "a.c", "-o"), "option -o lacks its value"),
    (("-Oz", "-c", "a.c", "@more.rsp"), "nested response file @more.rsp"),
    (("--version",), "option --version is not handled"),
])
def test_calls_llmcc_does_not_understand_pass_through_with_a_reason(args, reason):
    assert reason_of(*args) == reason


def test_value_of_a_separate_argument_option_is_never_taken_for_a_source():
    """`-include x.c` names a header to include, not a second translation unit."""
    inv = compile_of("-Oz", "-c", "-include", "pre.c", "a.c")
    assert inv.source == "a.c"
    assert compile_of("-Oz", "-c", "-o", "x.c.o", "a.c").output == "x.c.o"


# --- depfiles --------------------------------------------------------------------------------

def test_md_without_output_writes_the_depfile_beside_the_default_object():
    inv = compile_of("-Oz", "-c", "src/a.c", "-MD")
    assert (inv.output, inv.depfile) == ("a.o", "a.d")
    assert not inv.depfile_given and not inv.dep_target_given


def test_md_with_output_replaces_the_output_extension():
    inv = compile_of("-Oz", "-c", "a.c", "-MMD", "-o", "build/x.c.o")
    assert inv.depfile == "build/x.c.d"


def test_md_with_an_extensionless_output_appends_d():
    assert compile_of("-Oz", "-c", "a.c", "-MD", "-o", "build/obj").depfile == "build/obj.d"


def test_md_with_mf_uses_the_named_depfile():
    for args in (("-MF", "deps/a.dep"), ("-MFdeps/a.dep",)):
        inv = compile_of("-Oz", "-c", "a.c", "-MD", *args, "-o", "x.o")
        assert inv.depfile == "deps/a.dep" and inv.depfile_given


def test_mf_without_md_asks_for_no_depfile():
    """Without -MD/-MMD clang ignores -MF on a compile; llmcc must not invent a depfile."""
    assert compile_of("-Oz", "-c", "a.c", "-MF", "a.d").depfile is None


@pytest.mark.parametrize("target", [("-MT", "y"), ("-MQ", "y"), ("-MTy",)])
def test_mt_and_mq_mark_the_target_as_given(target):
    assert compile_of("-Oz", "-c", "a.c", "-MD", *target).dep_target_given


def test_frontend_args_spell_out_depfile_and_target_clang_would_derive_from_o():
    inv = compile_of("-Oz", "-c", "a.c", "-MD", "-o", "out/a.o")
    args = inv.frontend_args("/tmp/tu.bc")
    assert args[args.index("-o") + 1] == "/tmp/tu.bc"
    assert args[args.index("-MF") + 1] == "out/a.d"
    assert args[args.index("-MQ") + 1] == "out/a.o"
    assert "-emit-llvm" in args


def test_frontend_args_leave_a_given_depfile_and_target_alone():
    inv = compile_of("-Oz", "-c", "a.c", "-MD", "-MF", "x.d", "-MT", "y")
    args = inv.frontend_args("/tmp/tu.bc")
    assert args.count("-MF") == 1 and args.count("-MT") == 1 and "-MQ" not in args


def test_frontend_args_without_depfile_add_no_dependency_flags():
    args = compile_of("-Oz", "-c", "a.c").frontend_args("/tmp/tu.bc")
    assert not {"-MF", "-MQ", "-MT"} & set(args)


# --- what reaches code generation ------------------------------------------------------------

def test_codegen_drops_preprocessor_and_depfile_flags_but_keeps_code_generation_flags():
    inv = compile_of("-Oz", "-c", "-DX=1", "-D", "Y", "-Iinc", "-I", "inc2", "-isystem", "sys",
                     "-include", "cfg.h", "-UZ", "-MD", "-MF", "a.d", "-MT", "a", "-x", "c",
                     "-fPIC", "-march=x86-64-v2", "-g", "-ffunction-sections", "-Wall",
                     "a.c", "-o", "a.o")
    assert inv.codegen == ("-Oz", "-fPIC", "-march=x86-64-v2", "-g", "-ffunction-sections",
                           "-Wall")


def test_frontend_keeps_every_user_argument_but_the_output():
    args = ["-Oz", "-c", "-DX=1", "-Iinc", "-MD", "-fPIC", "a.c", "-o", "a.o"]
    assert compile_of(*args).frontend_base == tuple(args[:-2])


def test_codegen_args_compile_ir_and_skip_the_pipeline_for_optimised_ir():
    baseline = codegen_args(("-Oz",), "tu.bc", "tu.o", run_pipeline=True)
    assert baseline[:1] == ["-Oz"] and baseline[-2:] == ["-o", "tu.o"]
    assert ["-x", "ir", "tu.bc"] == baseline[baseline.index("-x"):baseline.index("-x") + 3]
    assert "-disable-llvm-passes" not in baseline
    tuned = codegen_args(("-Oz",), "tu.bc", "tu.o", run_pipeline=False)
    assert tuned[-2:] == ["-Xclang", "-disable-llvm-passes"]


# --- response files --------------------------------------------------------------------------

def _reader(files: dict[str, str]):
    def read_text(path: str) -> str:
        if path not in files:
            raise FileNotFoundError(path)
        return files[path]
    return read_text


def test_response_file_is_replaced_by_its_arguments_in_place():
    read = _reader({"args.rsp": "-Oz -c\n  a.c\n-o a.o\n"})
    assert expand_response_files(["-Wall", "@args.rsp", "-g"], read) == \
        ["-Wall", "-Oz", "-c", "a.c", "-o", "a.o", "-g"]


def test_response_file_quoting_follows_gnu_rules():
    read = _reader({"q.rsp": "-DMSG=\"hello world\" 'single quoted' back\\ slash"})
    assert expand_response_files(["@q.rsp"], read) == \
        ["-DMSG=hello world", "single quoted", "back slash"]


def test_response_file_words_are_split_as_clang_splits_them():
    """LLVM's GNU tokenizer, not shlex: backslashes escape inside single quotes too, an unclosed
    quote runs to the end, empty words vanish, a UTF-8 byte order mark is skipped."""
    read = _reader({"q.rsp": "\ufeff'-DMSG=\"a\\nb\"' \"x\\\\y\" \"\" a\"\"b \"-DLAST=1\n"})
    assert expand_response_files(["@q.rsp"], read) == \
        ['-DMSG="anb"', "x\\y", "ab", "-DLAST=1\n"]


def test_unreadable_response_file_stays_for_clang_to_report():
    assert expand_response_files(["-c", "@missing.rsp"], _reader({})) == ["-c", "@missing.rsp"]


def test_lone_at_sign_is_not_a_response_file():
    assert expand_response_files(["@"], _reader({})) == ["@"]


def test_response_file_naming_another_passes_the_call_through():
    """The nested @file stays unexpanded, and classify lets plain clang handle it."""
    read = _reader({"outer.rsp": "-Oz -c a.c @inner.rsp", "inner.rsp": "-g"})
    expanded = expand_response_files(["@outer.rsp"], read)
    assert expanded == ["-Oz", "-c", "a.c", "@inner.rsp"]
    assert isinstance(classify(expanded, SZ), Passthrough)


def test_frontend_depfile_can_be_redirected_past_the_users_mf():
    """llmcc writes the real depfile only with the object, so the frontend's goes elsewhere."""
    for args in (("-MD", "-MF", "x.d", "-MT", "y"), ("-MMD",)):
        inv = compile_of("-Oz", "-c", "a.c", *args)
        front = inv.frontend_args("/tmp/tu.bc", "/tmp/tu.d")
        last_mf = len(front) - 1 - front[::-1].index("-MF")
        assert front[last_mf + 1] == "/tmp/tu.d"
    assert "-MF" not in compile_of("-Oz", "-c", "a.c").frontend_args("/tmp/tu.bc", "/tmp/tu.d")


@pytest.mark.parametrize("args, system_deps", [
    (("-MD",), True), (("-MMD",), False), (("-MD", "-MMD"), False), (("-MMD", "-MD"), False),
])
def test_any_mmd_keeps_system_headers_out_of_the_depfile(args, system_deps):
    """clang -### shows -sys-header-deps only when -MD comes without any -MMD."""
    assert compile_of("-Oz", "-c", "a.c", *args).system_deps is system_deps

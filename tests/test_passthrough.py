"""The battery: for calls llmcc does not optimise, llmcc must be indistinguishable from clang.

Each case runs plain clang and then llmcc in fresh copies of the same tree, at the same absolute
path (debug info records the working directory), and compares exit code, stdout, stderr and
every file left behind, byte for byte. Plain clang is run with the argv[0] llmcc hands it
(`LLMCC_CLANG`, pinned to the `clang` fixture by `env`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import log_events, run

MAIN_C = """#include "config.h"
#include <stdio.h>
int helper(int);
int main(int argc, char **argv) { (void)argv; printf("%d\\n", helper(argc) + LIMIT); return 0; }
"""
HELPER_C = """#include "config.h"
int helper(int x) { int s = 0; for (int i = 0; i < x * LIMIT; i++) s += i % 7; return s; }
"""
WARN_C = """int f(int x) { int unused; return x; }
"""
BROKEN_C = """int f(int x) { return x +; }
"""
STDIN_C = b"int from_stdin(int x) { return x * 5 + 1; }\n"

TREE = {
    "main.c": MAIN_C,
    "helper.c": HELPER_C,
    "config.h": "#define LIMIT 3\n",
    "warn.c": WARN_C,
    "broken.c": BROKEN_C,
    "o2.rsp": "-O2 -c helper.c -o from_rsp.o\n",
    "preprocess.rsp": "-E -DLIMIT_OVERRIDE=1 main.c\n",
    "out/.keep": "",
}

# name -> (arguments after the compiler, standard input)
CASES: dict[str, tuple[list[str], bytes | None]] = {
    "preprocess_to_stdout": (["-E", "main.c"], None),
    "preprocess_to_file": (["-E", "-Oz", "main.c", "-o", "out/main.i"], None),
    "assembly": (["-S", "-Oz", "helper.c"], None),
    "assembly_named": (["-Oz", "-S", "helper.c", "-o", "out/helper.s"], None),
    "dependencies_only": (["-M", "main.c"], None),
    "user_dependencies_only": (["-MM", "main.c"], None),
    "dependencies_only_to_file": (["-MM", "-MF", "out/deps.d", "-MT", "tgt", "main.c"], None),
    "md_on_a_link": (["-Oz", "-MD", "main.c", "helper.c", "-o", "out/prog"], None),
    "mmd_mf_mt_on_a_link": (["-Os", "-MMD", "-MF", "out/prog.d", "-MT", "prog", "main.c",
                             "helper.c", "-o", "out/prog"], None),
    "link_two_sources": (["-Oz", "main.c", "helper.c", "-o", "prog"], None),
    "link_to_a_out": (["-Oz", "main.c", "helper.c"], None),
    "compile_two_sources": (["-Oz", "-c", "main.c", "helper.c"], None),
    "stdin_source": (["-Oz", "-x", "c", "-c", "-", "-o", "from_stdin.o"], STDIN_C),
    "stdin_preprocess": (["-x", "c", "-E", "-"], STDIN_C),
    "response_file_compile": (["@o2.rsp"], None),
    "response_file_preprocess": (["@preprocess.rsp"], None),
    "missing_response_file": (["-Oz", "-c", "@absent.rsp"], None),
    "lto_compile": (["-flto", "-Oz", "-c", "helper.c"], None),
    "thin_lto_compile": (["-flto=thin", "-Os", "-c", "helper.c", "-o", "out/h.o"], None),
    "debug_compile_at_o0": (["-O0", "-g", "-c", "main.c"], None),
    "pic_at_o0": (["-O0", "-fPIC", "-c", "helper.c", "-o", "out/helper.o"], None),
    "compile_at_o2": (["-O2", "-c", "helper.c", "-MD"], None),
    "object_to_stdout": (["-Oz", "-c", "helper.c", "-o", "-"], None),
    "werror_warning_at_oz": (["-Oz", "-Wall", "-Werror", "-c", "warn.c"], None),
    "syntax_error_at_oz": (["-Oz", "-c", "broken.c", "-o", "out/broken.o"], None),
    "syntax_error_with_depfile_at_os": (["-Os", "-MD", "-c", "broken.c"], None),
    "missing_output_directory_at_oz": (["-Oz", "-c", "helper.c", "-o", "nowhere/helper.o"], None),
    "missing_output_directory_with_depfile_elsewhere_at_oz": (
        ["-Oz", "-MD", "-MF", "out/helper.d", "-c", "helper.c", "-o", "nowhere/helper.o"], None),
    "missing_depfile_directory_at_oz": (
        ["-Oz", "-MMD", "-MF", "nowhere/helper.d", "-c", "helper.c", "-o", "out/helper.o"], None),
    "missing_source_at_oz": (["-Oz", "-c", "absent.c"], None),
    "unknown_option": (["-Oz", "-c", "helper.c", "--frobnicate"], None),
    "unknown_f_option_at_oz": (["-Oz", "-c", "helper.c", "-fno-such-thing"], None),
    "version": (["--version"], None),
    "dump_version": (["-dumpversion"], None),
    "sanitizer_compile": (["-Oz", "-fsanitize=undefined", "-c", "helper.c"], None),
    # the kernel's kbuild writes depfiles this way; macros alone through -Wp are intercepted
    "depfile_through_wp_at_oz": (["-Oz", "-Wp,-MD,out/helper.d", "-c", "helper.c"], None),
    "macro_and_depfile_through_wp_at_oz": (
        ["-Oz", "-Wp,-DLIMIT2=1", "-Wp,-MMD,out/h.d", "-c", "helper.c", "-o", "out/h.o"], None),
}

# Cases llmcc itself intercepts before handing them back: plain clang must still be all the
# user sees. The rest never reach the optimiser.
INTERCEPTED_THEN_HANDED_BACK = {
    "werror_warning_at_oz", "syntax_error_at_oz", "syntax_error_with_depfile_at_os",
    "missing_output_directory_at_oz", "unknown_f_option_at_oz", "missing_source_at_oz",
    "missing_output_directory_with_depfile_elsewhere_at_oz", "missing_depfile_directory_at_oz",
}


# What each case leaves when plain clang runs it: "-" is standard output, other keys are the
# files it creates in the tree, each with the kind of content it must hold. An error case may
# still leave something behind (clang writes the depfile before it finds the syntax error).
OBJECT, BITCODE, EXECUTABLE, ASSEMBLY, DEPFILE, PREPROCESSED, VERSION = (
    "object", "bitcode", "executable", "assembly", "depfile", "preprocessed", "version")
PRODUCES: dict[str, dict[str, str]] = {
    "preprocess_to_stdout": {"-": PREPROCESSED},
    "preprocess_to_file": {"out/main.i": PREPROCESSED},
    "assembly": {"helper.s": ASSEMBLY},
    "assembly_named": {"out/helper.s": ASSEMBLY},
    "dependencies_only": {"-": DEPFILE},
    "user_dependencies_only": {"-": DEPFILE},
    "dependencies_only_to_file": {"out/deps.d": DEPFILE},
    "md_on_a_link": {"out/prog": EXECUTABLE, "out/prog.d": DEPFILE},
    "mmd_mf_mt_on_a_link": {"out/prog": EXECUTABLE, "out/prog.d": DEPFILE},
    "link_two_sources": {"prog": EXECUTABLE},
    "link_to_a_out": {"a.out": EXECUTABLE},
    "compile_two_sources": {"main.o": OBJECT, "helper.o": OBJECT},
    "stdin_source": {"from_stdin.o": OBJECT},
    "stdin_preprocess": {"-": PREPROCESSED},
    "response_file_compile": {"from_rsp.o": OBJECT},
    "response_file_preprocess": {"-": PREPROCESSED},
    "missing_response_file": {},
    "lto_compile": {"helper.o": BITCODE},
    "thin_lto_compile": {"out/h.o": BITCODE},
    "debug_compile_at_o0": {"main.o": OBJECT},
    "pic_at_o0": {"out/helper.o": OBJECT},
    "compile_at_o2": {"helper.o": OBJECT, "helper.d": DEPFILE},
    "object_to_stdout": {"-": OBJECT},
    "werror_warning_at_oz": {},
    "syntax_error_at_oz": {},
    "syntax_error_with_depfile_at_os": {"broken.d": DEPFILE},
    "missing_output_directory_at_oz": {},
    "missing_output_directory_with_depfile_elsewhere_at_oz": {},
    "missing_depfile_directory_at_oz": {},
    "missing_source_at_oz": {},
    "unknown_option": {},
    "unknown_f_option_at_oz": {},
    "version": {"-": VERSION},
    "dump_version": {"-": VERSION},
    "sanitizer_compile": {"helper.o": OBJECT},
    "depfile_through_wp_at_oz": {"helper.o": OBJECT, "out/helper.d": DEPFILE},
    "macro_and_depfile_through_wp_at_oz": {"out/h.o": OBJECT, "out/h.d": DEPFILE},
}
FAILING = {"werror_warning_at_oz", "syntax_error_at_oz", "missing_response_file",
           "syntax_error_with_depfile_at_os", "missing_output_directory_at_oz",
           "missing_source_at_oz", "unknown_option", "unknown_f_option_at_oz",
           "missing_output_directory_with_depfile_elsewhere_at_oz",
           "missing_depfile_directory_at_oz"}


def _holds(kind: str, blob: bytes) -> bool:
    """Whether `blob` is real output of that kind, not an empty or stray file."""
    elf_type = int.from_bytes(blob[16:18], "little") if blob[:4] == b"\x7fELF" else None
    return {
        OBJECT: elf_type == 1,  # ET_REL
        EXECUTABLE: elf_type in (2, 3),  # ET_EXEC, or ET_DYN for a PIE
        BITCODE: blob[:4] == b"BC\xc0\xde",
        ASSEMBLY: b".text" in blob and b"helper:" in blob,
        DEPFILE: b":" in blob and b".c" in blob,
        PREPROCESSED: b"#include" not in blob and (b"int main(" in blob or b"from_stdin" in blob),
        VERSION: b"19" in blob,  # clang-19 names its release
    }[kind]


def _populate(root: Path) -> None:
    for relative, text in TREE.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _snapshot(root: Path) -> dict[str, bytes]:
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            files[str(path.relative_to(root))] = path.read_bytes()
    return files


def _outcome(program: str, args: list[str], stdin: bytes | None, tmp_path: Path,
             label: str, env: dict[str, str]) -> dict:
    """Run in a fresh tree at tmp_path/work, then move the tree aside as tmp_path/<label>."""
    work = tmp_path / "work"
    _populate(work)
    done = run([program, *args], cwd=work, env=env, input=stdin)
    outcome = {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr,
               "files": _snapshot(work)}
    work.rename(tmp_path / label)
    return outcome



@pytest.mark.parametrize("name", sorted(CASES))
def test_llmcc_is_byte_identical_to_plain_clang(name, tmp_path, clang, llmcc, env):
    args, stdin = CASES[name]
    expected = _outcome(clang, args, stdin, tmp_path, "clang", env)
    actual = _outcome(llmcc, args, stdin, tmp_path, "llmcc", env)
    assert actual["rc"] == expected["rc"]
    assert actual["stderr"].decode(errors="replace") == expected["stderr"].decode(errors="replace")
    assert actual["stdout"] == expected["stdout"]
    assert sorted(actual["files"]) == sorted(expected["files"])
    for path, content in expected["files"].items():
        assert actual["files"][path] == content, f"{path} differs from plain clang's"
    outcomes = {event["outcome"] for event in log_events(env)}
    if name in INTERCEPTED_THEN_HANDED_BACK:
        assert outcomes == {"fallback"}
    else:
        assert outcomes == {"passthrough"}


def test_battery_cases_produce_what_they_claim(tmp_path, clang, env):
    """Guard the battery itself: the error cases fail, and every case leaves exactly the output
    it is named for (standard output or files), each of the kind it claims."""
    assert set(PRODUCES) == set(CASES)
    for name in sorted(CASES):
        outcome = _outcome(clang, *CASES[name], tmp_path / name, "done", env)
        assert (outcome["rc"] != 0) == (name in FAILING), (name, outcome["stderr"].decode())
        claimed = PRODUCES[name]
        created = {path: blob for path, blob in outcome["files"].items() if path not in TREE}
        assert sorted(created) == sorted(set(claimed) - {"-"}), name
        assert bool(outcome["stdout"]) == ("-" in claimed), name
        for path, kind in claimed.items():
            blob = outcome["stdout"] if path == "-" else created[path]
            assert _holds(kind, blob), f"{name}: {path} is not {kind}: {blob[:80]!r}"


def test_passthrough_reason_is_logged(tmp_path, llmcc, env):
    _populate(tmp_path)
    done = run([llmcc, "-O2", "-c", "helper.c"], cwd=tmp_path, env=env)
    assert done.returncode == 0 and (tmp_path / "helper.o").exists()
    events = log_events(env)
    assert [e["outcome"] for e in events] == ["passthrough"]
    assert events[0]["reason"] == "optimisation level -O2 is not optimised by llmcc"
    assert events[0]["args"] == ["-O2", "-c", "helper.c"]


def test_fallback_reason_is_logged_without_a_warning(tmp_path, llmcc, env):
    """The user's own compile error is clang's to report; llmcc adds nothing to stderr."""
    _populate(tmp_path)
    done = run([llmcc, "-Oz", "-c", "broken.c"], cwd=tmp_path, env=env)
    assert done.returncode != 0
    assert b"llmcc" not in done.stderr
    events = log_events(env)
    assert [e["outcome"] for e in events] == ["fallback"]
    assert events[0]["reason"].startswith("the frontend exited")


# Modules a passthrough call must not import: each costs every call milliseconds (typing alone
# ~10 ms here, re, enum and collections a few each; subprocess, json and diskcache are for
# compiles).
NOT_ON_THE_PASSTHROUGH_PATH = ("typing", "re", "enum", "collections", "subprocess", "json",
                               "diskcache", "platformdirs", "sqlite3", "tomllib")


@pytest.mark.parametrize("config", ["absent", "empty", "/dev/null", "settings"])
def test_a_passthrough_call_imports_nothing_it_does_not_need(tmp_path, env, config):
    """Run llmcc's own entry point as its console script does, and stop it where it would
    exec the real clang: by then llmcc must have imported none of the heavy modules (an
    editable install's import hook loads re before llmcc runs: not llmcc's doing). A config
    file with nothing in it (as bench/build.py passes, /dev/null) is not parsed, one with
    settings only when its bytes change (the first call here)."""
    _populate(tmp_path)
    environ = {k: v for k, v in env.items() if k != "LLMCC_LOG"}  # a log imports json
    if config == "empty":
        Path(environ["LLMCC_CONFIG"]).write_text("")
    elif config == "/dev/null":
        environ["LLMCC_CONFIG"] = config
    elif config == "settings":
        Path(environ["LLMCC_CONFIG"]).write_text('candidates = 2\nlevels = "sz"\n')
    code = ("import os, sys\n"
            "before = set(sys.modules)\n"
            "def report(*args):\n"
            f"    print(sorted(m for m in {NOT_ON_THE_PASSTHROUGH_PATH!r}\n"
            "                 if m in sys.modules and m not in before))\n"
            "    os._exit(0)\n"
            "os.execv = report\n"
            "sys.argv = ['llmcc', '-O0', '-c', 'helper.c']\n"
            "from llmcc.launch import cc\n"
            "cc()\n")
    if config == "settings":
        first = run([sys.executable, "-c", code], cwd=tmp_path, env=environ)
        assert "tomllib" in first.stdout.decode()
    done = run([sys.executable, "-c", code], cwd=tmp_path, env=environ)
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "[]"

"""The TU summary, the model's input: exact counts on a known C file, determinism across runs,
paths and hash seeds, loops as LLVM finds them, a prompt within its budget whatever the TU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SIZE_C, SIZE_H

from llmcc import summary, toolchain
from llmcc.train.dataset import count_tokens

# Four functions (one static, one self-recursive, one with a two-deep loop nest), two library
# calls (puts twice, strlen), two strings, zeroed and initialised data including a padded struct.
KNOWN_C = """#include <string.h>
extern int puts(const char *);
struct rec { char c; int i; double d; };
struct rec recs[2] = {{1, 2, 3.0}, {4, 5, 6.0}};
static const char *greeting = "hello, world";
static int table[16];
static int square(int x) { return x * x; }
int sum(const int *v, int n) {
    int s = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            s += v[i] * v[j] + table[j & 15];
    return s;
}
int fact(int n) { return n <= 1 ? 1 : n * fact(n - 1); }
int main(void) {
    puts(greeting);
    puts("bye");
    return sum(table, 4) + square(3) + fact(5) + (int)strlen(greeting) + recs[1].i;
}
"""


def _bitcode(clang: str, source: Path, *flags: str) -> Path:
    """The frontend call of an intercepted compile: unoptimised IR as clang -Oz would build it."""
    out = source.with_suffix(".bc")
    subprocess.run([clang, "-Oz", *flags, "-c", str(source), "-emit-llvm", "-Xclang",
                    "-disable-llvm-passes", "-o", str(out)], check=True, cwd=source.parent)
    return out


def _write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return directory / name


@pytest.fixture(scope="module")
def llvm_dis(clang: str) -> str:
    return toolchain.llvm_dis_beside(clang)


@pytest.fixture
def known(clang: str, llvm_dis: str, tmp_path: Path) -> dict:
    return summary.summarize_bitcode(str(_bitcode(clang, _write(tmp_path, "known.c", KNOWN_C))),
                                     llvm_dis)


def test_known_c_file_gives_its_exact_counts(known: dict):
    module, calls, data = known["module"], known["calls"], known["globals"]
    assert module["functions"] == 4 and module["local_functions"] == 1
    assert module["declarations"] == 2  # puts, strlen (intrinsics are not counted here)
    assert (module["loops"], module["loop_depth"], module["annotated_loops"]) == (2, 2, 2)
    assert known["library_calls"] == {"puts": 2, "strlen": 1}
    assert calls["external"] == 3 and calls["external_functions"] == 2
    assert calls["internal"] == 4  # sum, square, fact from main; fact from itself
    assert (calls["recursive"], calls["self_recursive"], calls["called_once"]) == (1, 1, 1)
    assert (calls["roots"], calls["depth"], calls["indirect"]) == (1, 2, 0)
    assert set(known["intrinsics"]) == {"llvm.lifetime.start", "llvm.lifetime.end"}
    assert (data["defined"], data["strings"], data["string_bytes"]) == (5, 2, 4 + 13)
    assert data["zero_bytes"] == 16 * 4
    assert data["data_bytes"] == 2 * 16 + 8 + 4 + 13  # recs (padded), greeting, the strings
    largest = known["functions"][0]
    assert (largest["loops"], largest["loop_depth"], largest["params"]) == (2, 2, 2)
    assert largest["instructions"] == max(f["instructions"] for f in known["functions"])
    assert sum(f["instructions"] for f in known["functions"]) == module["instructions"]
    assert [f["recursive"] for f in known["functions"]].count(True) == 1
    assert known["opcodes"]["call"] == 13  # 4 internal + 3 library + 6 lifetime markers


def test_summary_carries_its_version(known: dict):
    assert known["version"] == summary.SUMMARY_VERSION
    assert summary.to_prompt(known).startswith(f"tu v{summary.SUMMARY_VERSION}\n")


def test_summary_names_no_path_and_none_of_the_tus_own_symbols(known: dict, tmp_path: Path):
    text = json.dumps(known) + summary.to_prompt(known)
    assert str(tmp_path) not in text and "known" not in text
    for own in ("square", "fact", "main", "greeting", "recs", "table"):
        assert own not in text


def test_same_code_at_another_path_gives_the_same_summary(clang: str, llvm_dis: str,
                                                         tmp_path: Path):
    """The ModuleID and source_filename differ; nothing else may."""
    first = _bitcode(clang, _write(tmp_path / "a", "known.c", KNOWN_C))
    second = _bitcode(clang, _write(tmp_path / "elsewhere" / "deeper", "renamed.c", KNOWN_C))
    assert first.read_bytes() != second.read_bytes()
    assert (summary.summarize_bitcode(str(first), llvm_dis)
            == summary.summarize_bitcode(str(second), llvm_dis))


def test_same_bitcode_gives_identical_summaries_under_any_hash_seed(clang: str, llvm_dis: str,
                                                                    tmp_path: Path):
    bitcode = _bitcode(clang, _write(tmp_path, "known.c", KNOWN_C))
    script = ("import json, sys; from llmcc import summary; "
              "s = summary.summarize_bitcode(sys.argv[1], sys.argv[2]); "
              "print(json.dumps(s)); print(summary.to_prompt(s))")
    outputs = [subprocess.run([sys.executable, "-c", script, str(bitcode), llvm_dis],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")]
    assert outputs[0] == outputs[1] == outputs[2]
    assert json.loads(outputs[0].splitlines()[0]) == summary.summarize_bitcode(str(bitcode),
                                                                               llvm_dis)


def test_different_tus_give_different_summaries(clang: str, llvm_dis: str, known: dict,
                                                tmp_path: Path):
    _write(tmp_path, "size.h", SIZE_H)
    other = summary.summarize_bitcode(str(_bitcode(clang, _write(tmp_path, "size.c", SIZE_C))),
                                      llvm_dis)
    assert other != known
    assert summary.to_prompt(other) != summary.to_prompt(known)
    assert other["module"]["functions"] == 5  # helper, work, norm, fill, and the inline dot


def test_debug_info_does_not_count_as_code(clang: str, llvm_dis: str, known: dict,
                                           tmp_path: Path):
    with_g = summary.summarize_bitcode(
        str(_bitcode(clang, _write(tmp_path, "known.c", KNOWN_C), "-g")), llvm_dis)
    assert with_g["module"]["debug_records"] > 0
    assert with_g["opcodes"] == known["opcodes"] and with_g["calls"] == known["calls"]


IRREDUCIBLE_AND_NESTED = """; ModuleID = 'hand.ll'
define void @irreducible(i1 %c) {
entry:
  br i1 %c, label %a, label %b

a:
  br label %b

b:
  br i1 %c, label %a, label %out

out:
  ret void
}

define void @nested(i1 %c) {
  br label %outer

outer:
  br label %inner

inner:
  switch i32 0, label %inner [
    i32 1, label %latch
    i32 2, label %done
  ]

latch:
  br i1 %c, label %outer, label %done, !llvm.loop !0

done:
  ret void
}

!0 = distinct !{!0}
"""


def test_loops_are_natural_loops_as_llvm_counts_them():
    """A cycle entered at two blocks has no header (LoopInfo counts none); a switch case back
    to its own block is an inner loop."""
    result = summary.summarize_ir(IRREDUCIBLE_AND_NESTED)
    by_blocks = {f["blocks"]: f for f in result["functions"]}
    assert by_blocks[4]["loops"] == 0
    assert (by_blocks[5]["loops"], by_blocks[5]["loop_depth"]) == (2, 2)
    assert result["module"]["annotated_loops"] == 1


# Names as costly as names get: a token per character.
LIBRARY = '"{}.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-.-"'
INTRINSIC = "llvm.x86.{}.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.v4i32"


def _huge_ir(functions: int) -> str:
    """Synthetic IR with more of everything than any prompt could list: thousands of functions
    (each a two-deep loop nest calling the next, the last itself), library functions with long
    punctuated names, distinct intrinsics, vector types and strings."""
    lines = ["; ModuleID = '/a/path/that/must/not/show.bc'", 'source_filename = "/a/path.c"',
             "%struct.pair = type { i32, ptr }"]
    for i in range(functions):
        lines.append(f'@.str.{i} = private unnamed_addr constant [6 x i8] c"s{i % 10}xyz\\00"'
                     ", align 1")
    for i in range(functions):
        lines += [
            f"define internal i32 @fn{i}(i32 noundef %0, ptr noundef %1) #0 {{",
            "  %3 = alloca [16 x i32], align 16", "  br label %4", "",
            "4:", "  %5 = phi i32 [ 0, %2 ], [ %13, %12 ]", "  %6 = icmp slt i32 %5, %0",
            "  br i1 %6, label %7, label %14", "",
            "7:", "  %8 = phi i32 [ 0, %4 ], [ %10, %9 ]",
            f"  call void @{LIBRARY.format(i)}(ptr @.str.{i})",
            f"  %v = call <4 x i32> @{INTRINSIC.format(i)}(<4 x i32> zeroinitializer)",
            "  br label %9", "",
            "9:", f"  %10 = call i32 @fn{min(i + 1, functions - 1)}(i32 %8, ptr %1)",
            "  %11 = icmp slt i32 %10, %5", "  br i1 %11, label %7, label %12", "",
            "12:", "  %13 = add nsw i32 %5, 1", "  br label %4, !llvm.loop !0", "",
            "14:", "  ret i32 %5", "}", ""]
        lines += [f"declare void @{LIBRARY.format(i)}(ptr)",
                  f"declare <4 x i32> @{INTRINSIC.format(i)}(<4 x i32>)"]
    lines += ["attributes #0 = { noinline nounwind }", "!0 = distinct !{!0}"]
    return "\n".join(lines) + "\n"


def test_prompt_fits_its_budget_on_a_huge_synthetic_tu():
    functions = 3000
    text = _huge_ir(functions)
    started = time.perf_counter()
    result = summary.summarize_ir(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"{len(text)} bytes of IR took {elapsed:.1f}s: not linear any more?"
    module = result["module"]
    assert module["functions"] == functions  # whole-TU totals, not a truncated view
    assert (module["loops"], module["loop_depth"]) == (2 * functions, 2)
    assert (result["calls"]["recursive"], result["calls"]["depth"]) == (1, functions)
    assert result["globals"]["strings"] == functions
    assert result["functions"][0]["attrs"] == ["noinline"]
    assert len(json.dumps(result)) < 32_000
    prompt = summary.to_prompt(result)
    assert count_tokens(prompt.encode()) <= summary.PROMPT_TOKEN_BUDGET
    assert "path" not in prompt
    # every section is still there, with fewer functions and names shown one by one
    sections = [line.split()[0] for line in prompt.splitlines()]
    assert sections[:9] == ["tu", "module", "sizes", "opcodes", "types", "calls", "library",
                            "intrinsics", "globals"]
    assert sections[-1] == "rest" and "f1" in sections
    assert f"f{summary.PROMPT_FUNCTIONS}" not in sections


def _records() -> Path:
    """A corpus's records (`python -m llmcc.train.corpus --work W` writes W/records)."""
    return Path(os.environ.get("LLMCC_RECORDS",
                               os.path.expanduser("~/.cache/llmcc-corpus/records")))


def test_prompt_fits_its_budget_on_the_largest_recorded_tu(llvm_dis: str):
    bitcodes = sorted(_records().glob("*/*.bc"), key=lambda p: (p.stat().st_size, p.name))
    if not bitcodes:
        pytest.skip(f"no recorded TUs under {_records()} (set LLMCC_RECORDS)")
    result = summary.summarize_bitcode(str(bitcodes[-1]), llvm_dis)
    prompt = summary.to_prompt(result)
    assert count_tokens(prompt.encode()) == summary.prompt_tokens(prompt)
    assert summary.prompt_tokens(prompt) <= summary.PROMPT_TOKEN_BUDGET
    assert result["module"]["functions"] >= len(result["functions"]) > 0

"""Candidate lists applied in one child process that loads LLVM once: the same bitcode as opt,
the same results, and a crash, hang or unusable library costs a list, never the compile."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import compile_outputs, frontend_ir, log_events, log_outcomes, script

from llmcc import batch_opt, passes
from llmcc.optimize import Evaluator, opt_command
from llmcc.toolchain import StepFailed, TimedOut, check_tools, llvm_version, opt_beside

SOURCE = r"""
#include <stdio.h>
#include <string.h>
struct word { const char *text; unsigned count; };
static struct word words[64];
static unsigned used;
static unsigned slot(const char *text) {
    unsigned h = 5381;
    while (*text) h = h * 33 + (unsigned char)*text++;
    return h & 63;
}
unsigned count(const char *text) {
    for (unsigned i = slot(text), n = 0; n < 64; n++, i = (i + 1) & 63) {
        if (!words[i].text) { words[i].text = text; used++; }
        if (strcmp(words[i].text, text) == 0) return ++words[i].count;
    }
    return 0;
}
void report(FILE *out) {
    for (unsigned i = 0; i < 64; i++)
        if (words[i].text) fprintf(out, "%s %u\n", words[i].text, words[i].count);
}
"""

# A stand-in libLLVM: the C API functions batch_opt calls, which copy the input through, and
# crash, hang or fail at the FAKE_LLVM_AT-th list as FAKE_LLVM says.
FAKE_LLVM_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static const char *data;
static size_t size;
static int calls;
void LLVMGetVersion(unsigned *a, unsigned *b, unsigned *c) {
    const char *v = getenv("FAKE_LLVM_VERSION");
    sscanf(v ? v : "19.1.7", "%u.%u.%u", a, b, c);
}
void *LLVMContextCreate(void) { return &calls; }
void LLVMContextDispose(void *c) {}
void *LLVMCreateMemoryBufferWithMemoryRange(const char *d, size_t n, const char *name, int z) {
    data = d; size = n; return &calls;
}
void LLVMDisposeMemoryBuffer(void *b) {}
int LLVMParseBitcodeInContext2(void *c, void *b, void **m) { *m = &calls; return 0; }
const char *LLVMGetTarget(void *m) { return "x86_64-pc-linux-gnu"; }
int LLVMGetTargetFromTriple(const char *t, void **target, char **e) { *target = &calls; return 0; }
void *LLVMCreateTargetMachine(void *t, const char *tr, const char *cpu, const char *f, int l,
                              int r, int cm) { return &calls; }
void LLVMDisposeTargetMachine(void *tm) {}
void *LLVMCreatePassBuilderOptions(void) { return &calls; }
void LLVMDisposePassBuilderOptions(void *o) {}
void *LLVMRunPasses(void *m, const char *p, void *tm, void *o) {
    const char *mode = getenv("FAKE_LLVM"), *at = getenv("FAKE_LLVM_AT");
    if (mode && at && ++calls == atoi(at)) {
        if (!strcmp(mode, "crash")) raise(SIGSEGV);
        if (!strcmp(mode, "hang")) for (;;) pause();
        if (!strcmp(mode, "fail")) return &calls;
    }
    return 0;
}
char *LLVMGetErrorMessage(void *e) { return strdup("unknown pass name 'nonsense'\n(fake)"); }
int LLVMWriteBitcodeToFile(void *m, const char *path) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, size, f);
    return fclose(f);
}
void LLVMDisposeModule(void *m) {}
"""


@pytest.fixture
def bitcode(tmp_path, clang) -> Path:
    source = tmp_path / "words.c"
    source.write_text(SOURCE)
    path = tmp_path / "words.bc"
    frontend_ir(clang, source, path)
    return path


@pytest.fixture(scope="session")
def tools(clang):
    return check_tools(clang, "")


def _lists(count: int) -> list[passes.PassList]:
    """The popular lists, then random lists of the vocabulary (seeded)."""
    import llmcc

    data = Path(llmcc.__file__).parent / "advisor" / "popular.json"
    popular = [passes.parse(entry["passes"]) for entry in json.loads(data.read_text())["lists"]]
    rng = random.Random(19)
    return popular[:count] + [passes.random_list(rng) for _ in range(count)]


def _fake_llvm(root: Path, clang: str) -> str:
    """root/bin/opt (the real opt behind a script) with the fake libLLVM in root/lib."""
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    source = root / "fake_llvm.c"
    source.write_text(FAKE_LLVM_C)
    subprocess.run([clang, "-shared", "-fPIC", "-o", str(root / "lib" / "libLLVM.so.19.1"),
                    str(source)], check=True)
    return script(root / "bin" / "opt", f'exec {opt_beside(clang)} "$@"\n')


@pytest.mark.parametrize("pic", [True, False], ids=["pic", "no-pic"])
def test_lists_applied_in_one_process_write_the_bytes_opt_writes(tmp_path, bitcode, tools, pic):
    lists = _lists(12)
    jobs = [(passes.to_pipeline(p), str(tmp_path / f"one{i}.bc")) for i, p in enumerate(lists)]
    library = batch_opt.library_beside(tools.opt)
    assert library is not None
    outcomes = batch_opt.apply_lists(library, llvm_version(tools.version), str(bitcode), jobs,
                                     pic, 60)
    assert outcomes == [None] * len(lists)
    for i, p in enumerate(lists):
        separate = tmp_path / f"separate{i}.bc"
        subprocess.run(opt_command(tools, pic, p, str(bitcode), str(separate)), check=True)
        assert Path(jobs[i][1]).read_bytes() == separate.read_bytes(), passes.to_text(p)


def test_prepared_candidates_measure_as_candidates_run_one_by_one(tmp_path, bitcode, tools):
    lists = _lists(8)
    results = []
    for name, prepare in (("one", True), ("separate", False)):
        workdir = tmp_path / name
        workdir.mkdir()
        evaluator = Evaluator(("-Oz",), True, tools, str(bitcode), str(workdir), 60)
        evaluator.baseline()
        if prepare:
            evaluator.prepare(lists)
            assert len(evaluator._prepared) == len(set(lists))
        results.append([(r.size, r.error, r.object, r.tool_failure)
                        for r in map(evaluator.candidate, lists)])
    assert results[0] == results[1]
    assert any(size is not None for size, *_ in results[0])


def _apply_with_fake(tmp_path, clang, bitcode, count, timeout=60.0, **env):
    opt = _fake_llvm(tmp_path / "fake", clang)
    library = batch_opt.library_beside(opt)
    assert library == str(tmp_path / "fake" / "lib" / "libLLVM.so.19.1")
    jobs = [("verify", str(tmp_path / f"out{i}.bc")) for i in range(count)]
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return batch_opt.apply_lists(library, "19.1.7", str(bitcode), jobs, True, timeout), jobs
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_crash_in_a_pass_ends_the_child_not_the_caller(tmp_path, clang, bitcode):
    outcomes, jobs = _apply_with_fake(tmp_path, clang, bitcode, 3, FAKE_LLVM="crash",
                                      FAKE_LLVM_AT="2")
    assert outcomes[0] is None and Path(jobs[0][1]).read_bytes() == bitcode.read_bytes()
    assert len(outcomes) == 2 and isinstance(outcomes[1], StepFailed)
    assert "died of signal 11" in str(outcomes[1])
    assert not Path(jobs[2][1]).exists()


def test_a_hanging_pass_is_killed_after_the_time_limit(tmp_path, clang, bitcode):
    started = time.monotonic()
    outcomes, _ = _apply_with_fake(tmp_path, clang, bitcode, 2, timeout=1.0, FAKE_LLVM="hang",
                                   FAKE_LLVM_AT="1")
    assert len(outcomes) == 1 and isinstance(outcomes[0], TimedOut)
    assert time.monotonic() - started < 20
    assert psutil.Process().children() == []  # killed and reaped



def test_a_list_the_library_rejects_fails_alone(tmp_path, clang, bitcode):
    outcomes, _ = _apply_with_fake(tmp_path, clang, bitcode, 3, FAKE_LLVM="fail",
                                   FAKE_LLVM_AT="2")
    assert outcomes[0] is None and outcomes[2] is None
    assert str(outcomes[1]) == "opt exited 1: unknown pass name 'nonsense' (fake)"


def test_a_library_of_another_release_is_not_used(tmp_path, clang, bitcode):
    with pytest.raises(batch_opt.Unavailable, match="is LLVM 18.1.8, opt is 19.1.7"):
        _apply_with_fake(tmp_path, clang, bitcode, 2, FAKE_LLVM_VERSION="18.1.8")


def test_no_library_beside_an_opt_means_one_opt_run_per_list(tmp_path, clang):
    assert batch_opt.library_beside(script(tmp_path / "opt", "exit 1\n")) is None


# --- through llmcc -------------------------------------------------------------------------------

def _counting(opt: str, calls: Path) -> str:
    """The opt script of `_fake_llvm`, now also logging each call but --version."""
    real = Path(opt).read_text().split("\n", 1)[1]
    return script(Path(opt), f'[ "$1" = --version ] || echo call >> {calls}\n{real}')


def test_a_compile_runs_no_opt_and_keeps_opts_object(tmp_path, clang, llmcc, env, bitcode):
    """k = 3 with the real library beside opt: no opt process, and the object of a compile
    whose opt has no library beside it (one opt run per list)."""
    source = tmp_path / "words.c"
    args = ["-Oz", "-c", str(source), "-o", str(tmp_path / "words.o")]
    objects = {}
    for name in ("with", "without"):
        root = tmp_path / name
        calls = root / "calls"
        (root / "bin").mkdir(parents=True)
        opt = _counting(script(root / "bin" / "opt", f'exec {opt_beside(clang)} "$@"\n'), calls)
        if name == "with":
            (root / "lib").mkdir()
            (root / "lib" / "libLLVM.so.19.1").symlink_to(batch_opt.library_beside(clang))
        run_env = {**env, "LLMCC_OPT": opt, "LLMCC_CACHE_DIR": str(root / "cache"),
                   "LLMCC_ADVISOR": "popular", "LLMCC_CANDIDATES": "3"}
        rc, stderr, objects[name] = compile_outputs(llmcc, args, tmp_path, run_env,
                                                    [str(tmp_path / "words.o")])
        assert rc == 0 and stderr == b""
        assert log_events(env)[-1]["evaluated"] == 3
        runs = calls.read_text().count("call") if calls.exists() else 0
        assert runs == (0 if name == "with" else 3)
    assert objects["with"] == objects["without"]


def test_a_crash_in_one_process_warns_once_and_is_not_cached(tmp_path, clang, llmcc, env,
                                                             bitcode):
    source = tmp_path / "words.c"
    out = str(tmp_path / "words.o")
    args = ["-Oz", "-c", str(source), "-o", out]
    plain = compile_outputs(clang, args, tmp_path, env, [out])[2]
    env.update(LLMCC_OPT=_fake_llvm(tmp_path / "fake", clang), FAKE_LLVM="crash",
               FAKE_LLVM_AT="1")
    for _ in range(2):
        rc, stderr, tuned = compile_outputs(llmcc, args, tmp_path, env, [out])
        assert rc == 0 and tuned == plain
        ours = stderr.decode().splitlines()
        assert len(ours) == 1 and "opt (in one process) died of signal 11" in ours[0], ours
        event = log_events(env)[-1]
        assert event["tool_failure"] and event["passes"] is None
    assert log_outcomes(env) == ["miss", "miss"]

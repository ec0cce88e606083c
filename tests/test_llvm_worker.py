"""The LLVM worker, one child process that loads LLVM once per compile: llvm-dis's text and
opt's bitcode, the same results, and a crash, hang or unusable library costs a step, never
the compile."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import (
    compile_outputs,
    frontend_ir,
    log_events,
    log_outcomes,
    sample_lists,
    script,
)

from llmcc import llvm_worker, passes
from llmcc.optimize import Evaluator, opt_command
from llmcc.summary import disassemble
from llmcc.toolchain import (
    StepFailed,
    TimedOut,
    check_tools,
    llvm_dis_beside,
    llvm_version,
    opt_beside,
)

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

# A stand-in libLLVM: the C API functions the worker calls, which copy the input through, and
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
char *LLVMPrintModuleToString(void *m) { return strdup("; the fake's module\n"); }
void LLVMDisposeMessage(char *message) { free(message); }
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


def _fake_llvm(root: Path, clang: str) -> str:
    """root/bin/opt (the real opt behind a script) with the fake libLLVM in root/lib."""
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    source = root / "fake_llvm.c"
    source.write_text(FAKE_LLVM_C)
    subprocess.run([clang, "-shared", "-fPIC", "-o", str(root / "lib" / "libLLVM.so.19.1"),
                    str(source)], check=True)
    return script(root / "bin" / "opt", f'exec {opt_beside(clang)} "$@"\n')


def _worker(tools, bitcode: Path, timeout: float = 60) -> llvm_worker.Worker:
    library = llvm_worker.library_beside(tools.opt)
    assert library is not None
    return llvm_worker.Worker(library, llvm_version(tools.version), str(bitcode), timeout)


@pytest.mark.parametrize("pic", [True, False], ids=["pic", "no-pic"])
def test_lists_applied_by_the_worker_write_the_bytes_opt_writes(tmp_path, bitcode, tools, pic):
    worker = _worker(tools, bitcode)
    try:
        for i, p in enumerate(sample_lists(12)):
            ours, separate = tmp_path / f"worker{i}.bc", tmp_path / f"separate{i}.bc"
            worker.apply(passes.to_pipeline(p), str(ours), pic)
            subprocess.run(opt_command(tools, pic, p, str(bitcode), str(separate)), check=True)
            assert ours.read_bytes() == separate.read_bytes(), passes.to_text(p)
    finally:
        worker.close()


def test_the_workers_text_is_llvm_dis_output(bitcode, tools, clang, clangxx, tmp_path):
    source = tmp_path / "shapes.cc"
    source.write_text("#include <vector>\nstruct S { virtual int f() { return 1; } };\n"
                      "int total(const std::vector<S*> &v) { int t = 0;"
                      " for (auto *s : v) t += s->f(); return t; }\n")
    cxx = tmp_path / "shapes.bc"
    frontend_ir(clangxx, source, cxx)
    for tu in (bitcode, cxx):
        worker = _worker(tools, tu)
        try:
            assert worker.text() == disassemble(str(tu), llvm_dis_beside(clang))
        finally:
            worker.close()


def test_prepared_candidates_measure_as_candidates_run_one_by_one(tmp_path, bitcode, tools):
    lists = sample_lists(8)
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
        evaluator.close()
    assert results[0] == results[1]
    assert any(size is not None for size, *_ in results[0])
    assert psutil.Process().children() == []


def _fake_worker(tmp_path, clang, bitcode, timeout=60.0, **env):
    """A worker on the stand-in library, with FAKE_LLVM* as given in its environment."""
    opt = _fake_llvm(tmp_path / "fake", clang)
    library = llvm_worker.library_beside(opt)
    assert library == str(tmp_path / "fake" / "lib" / "libLLVM.so.19.1")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return llvm_worker.Worker(library, "19.1.7", str(bitcode), timeout)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_a_crash_in_a_pass_ends_the_worker_not_the_caller(tmp_path, clang, bitcode):
    worker = _fake_worker(tmp_path, clang, bitcode, FAKE_LLVM="crash", FAKE_LLVM_AT="2")
    outs = [tmp_path / f"out{i}.bc" for i in range(3)]
    worker.apply("verify", str(outs[0]), True)
    assert outs[0].read_bytes() == bitcode.read_bytes()
    for out in outs[1:]:
        with pytest.raises(StepFailed, match="could not run opt: it died of signal 11"):
            worker.apply("verify", str(out), True)
    assert not outs[2].exists() and worker.ended == "died of signal 11"
    assert psutil.Process().children() == []


def test_a_hanging_pass_is_killed_after_the_time_limit(tmp_path, clang, bitcode):
    worker = _fake_worker(tmp_path, clang, bitcode, 1.0, FAKE_LLVM="hang", FAKE_LLVM_AT="1")
    started = time.monotonic()
    with pytest.raises(TimedOut, match="ran past 1s"):
        worker.apply("verify", str(tmp_path / "out.bc"), True)
    assert time.monotonic() - started < 20
    assert psutil.Process().children() == []  # killed and reaped


def test_a_list_the_library_rejects_fails_alone(tmp_path, clang, bitcode):
    worker = _fake_worker(tmp_path, clang, bitcode, FAKE_LLVM="fail", FAKE_LLVM_AT="2")
    worker.apply("verify", str(tmp_path / "a.bc"), True)
    with pytest.raises(StepFailed) as rejected:
        worker.apply("verify", str(tmp_path / "b.bc"), True)
    assert str(rejected.value) == ("LLVM in one process could not run opt: unknown pass name "
                                   "'nonsense' (fake)")
    worker.apply("verify", str(tmp_path / "c.bc"), True)
    assert (tmp_path / "c.bc").exists() and worker.ended is None
    worker.close()


def test_a_library_of_another_release_is_not_used(tmp_path, clang, bitcode):
    with pytest.raises(llvm_worker.Unavailable, match="is LLVM 18.1.8, opt is 19.1.7"):
        _fake_worker(tmp_path, clang, bitcode, FAKE_LLVM_VERSION="18.1.8")
    assert psutil.Process().children() == []


def test_no_library_beside_an_opt_means_one_opt_run_per_list(tmp_path):
    assert llvm_worker.library_beside(script(tmp_path / "opt", "exit 1\n")) is None


# --- through llmcc -------------------------------------------------------------------------------

def _counting_tool(path: Path, real: str, calls: Path) -> str:
    """`real` behind a script at `path` that logs each call but --version to `calls`."""
    return script(path, f'[ "$1" = --version ] || echo {path.name} >> {calls}\n'
                        f'exec {real} "$@"\n')


def test_a_compile_runs_no_opt_or_llvm_dis_and_keeps_their_object(tmp_path, clang, llmcc,
                                                                  env, bitcode):
    """The forest advisor at k = 3 with the real library beside opt: neither llvm-dis (the
    summary) nor opt runs, and the object is that of a compile whose opt has no library beside
    it (llvm-dis once, opt once per list)."""
    source = tmp_path / "words.c"
    args = ["-Oz", "-c", str(source), "-o", str(tmp_path / "words.o")]
    objects = {}
    for name in ("with", "without"):
        root = tmp_path / name
        calls = root / "calls"
        (root / "bin").mkdir(parents=True)
        opt = _counting_tool(root / "bin" / "opt", opt_beside(clang), calls)
        _counting_tool(root / "bin" / "llvm-dis", llvm_dis_beside(clang), calls)
        if name == "with":
            (root / "lib").mkdir()
            (root / "lib" / "libLLVM.so.19.1").symlink_to(llvm_worker.library_beside(clang))
        run_env = {**env, "LLMCC_OPT": opt, "LLMCC_CACHE_DIR": str(root / "cache"),
                   "LLMCC_ADVISOR": "forest", "LLMCC_CANDIDATES": "3"}
        rc, stderr, objects[name] = compile_outputs(llmcc, args, tmp_path, run_env,
                                                    [str(tmp_path / "words.o")])
        assert rc == 0 and stderr == b""
        tried = log_events(env)[-1]["evaluated"]
        runs = calls.read_text().split() if calls.exists() else []
        assert runs == ([] if name == "with" else ["llvm-dis"] + ["opt"] * tried)
    assert objects["with"] == objects["without"]
    assert psutil.Process().children() == []


def test_a_crash_in_the_worker_warns_once_and_is_not_cached(tmp_path, clang, llmcc, env,
                                                            bitcode):
    source = tmp_path / "words.c"
    out = str(tmp_path / "words.o")
    args = ["-Oz", "-c", str(source), "-o", out]
    plain = compile_outputs(clang, args, tmp_path, env, [out])[2]
    env.update(LLMCC_OPT=_fake_llvm(tmp_path / "fake", clang), LLMCC_ADVISOR="popular",
               FAKE_LLVM="crash", FAKE_LLVM_AT="1")
    for _ in range(2):
        rc, stderr, tuned = compile_outputs(llmcc, args, tmp_path, env, [out])
        assert rc == 0 and tuned == plain
        ours = stderr.decode().splitlines()
        assert len(ours) == 1 and "could not run opt: it died of signal 11" in ours[0], ours
        event = log_events(env)[-1]
        assert event["tool_failure"] and event["passes"] is None
    assert log_outcomes(env) == ["miss", "miss"]

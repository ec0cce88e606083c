"""Could a compile measure its candidates without a clang process each?

    .venv/bin/python bench/emit_in_process.py DIR [--lists 3]     (DIR: LLMCC_RECORD wrote it)

A tried list costs a cold compile about 0.9 of a plain one, most of it code generation by a
clang process of its own (docs/benchmark.md, "Where a cold build's time goes"). The LLVM worker
already holds each optimised module: emitting its object there
(`LLVMTargetMachineEmitToMemoryBuffer`) skips clang's start and the bitcode round trip. That
object is not one a compile may write (the C API sets fewer of clang's target options: no
address-significance table, and some functions come out otherwise), so it could only rank the
lists, and clang would still build the one ranked first. For each recorded TU and each of the
first `--lists` popular lists this applies the list as the worker does, emits the object in the
process and has clang build it from the same bitcode (as a compile does), timing both, and
prints how often the two objects' text + data agree, the median times, and what a compile guided
by the in-process objects would keep: clang builds the lists in their order, only those smaller
than clang's -Oz object there, until one is smaller in fact (`guided`), against clang building
every list.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import statistics
import sys
import tempfile
import time

from llmcc import llvm_worker
from llmcc.advisor.popular import PopularAdvisor
from llmcc.objfile import read_object
from llmcc.passes import to_pipeline
from llmcc.toolchain import llvm_version
from llmcc.train.measure import recorded_evaluator

_P = ctypes.c_void_p
_EMIT = {"LLVMTargetMachineEmitToMemoryBuffer": (ctypes.c_int, [_P, _P, ctypes.c_int,
                                                                 ctypes.POINTER(_P),
                                                                 ctypes.POINTER(_P)]),
         "LLVMGetBufferStart": (_P, [_P]), "LLVMGetBufferSize": (ctypes.c_size_t, [_P])}
_OBJECT_FILE = 1  # LLVMCodeGenFileType


def load(opt: str, version: str) -> ctypes.CDLL:
    """libLLVM as the worker loads it, with what emitting an object needs besides."""
    lib = llvm_worker._load(llvm_worker.library_beside(opt), version)
    for name, (restype, argtypes) in _EMIT.items():
        getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
    llvm_worker.initialise_targets(lib, ("AsmPrinter", "AsmParser"))  # and inline assembly
    return lib


def emit(lib: ctypes.CDLL, module: _P, pic: bool) -> bytes:
    """The module's object, generated in this process by the worker's kind of target machine."""
    machine = llvm_worker.target_machine(lib, module, pic)
    error, buffer = _P(), _P()
    try:
        if lib.LLVMTargetMachineEmitToMemoryBuffer(machine, module, _OBJECT_FILE,
                                                   ctypes.byref(error), ctypes.byref(buffer)):
            raise RuntimeError(ctypes.string_at(error).decode(errors="replace"))
        blob = ctypes.string_at(lib.LLVMGetBufferStart(buffer), lib.LLVMGetBufferSize(buffer))
        lib.LLVMDisposeMemoryBuffer(buffer)
        return blob
    finally:
        lib.LLVMDisposeTargetMachine(machine)


def measure(lib: ctypes.CDLL, bitcode: str, lists: tuple, work: str) -> dict:
    """One TU: clang's -Oz size, and per list (in-process size, clang size, in-process
    seconds, clang seconds)."""
    evaluator = recorded_evaluator(bitcode, work, 300.0)
    row = {"baseline": evaluator.baseline().size, "lists": []}
    with open(bitcode, "rb") as handle:
        data = handle.read()
    optimised = os.path.join(work, "optimised.bc")
    for passes in lists:
        with llvm_worker._Module(lib, data, bitcode.encode()) as module:
            if llvm_worker._apply(lib, module, to_pipeline(passes), evaluator.pic, optimised):
                continue  # a list LLVM refuses here is refused in a compile too
            started = time.perf_counter()
            inside = read_object(emit(lib, module, evaluator.pic)).size
            inside_seconds = time.perf_counter() - started
        started = time.perf_counter()
        blob, _ = evaluator._codegen(optimised, run_pipeline=False)  # as a compile does
        clang_seconds = time.perf_counter() - started
        clang = read_object(blob).size
        row["lists"].append((inside, clang, inside_seconds, clang_seconds))
    return row


def guided(row: dict) -> tuple[int, int]:
    """(bytes kept, clang builds) when clang builds the lists in the order of their in-process
    objects, only those smaller than -Oz's there, until one is smaller than -Oz's in fact."""
    builds = 0
    for inside, clang, _, _ in sorted(row["lists"], key=lambda entry: entry[0]):
        if inside >= row["baseline"]:
            break
        builds += 1
        if clang < row["baseline"]:
            return clang, builds
    return row["baseline"], builds


def report(rows: list[dict]) -> str:
    rows = [row for row in rows if row["lists"]]
    pairs = [entry for row in rows for entry in row["lists"]]
    agree = sum(1 for inside, clang, _, _ in pairs if inside == clang)
    baseline = sum(row["baseline"] for row in rows)
    smallest = [min(row["baseline"], *(entry[1] for entry in row["lists"])) for row in rows]
    best = sum(smallest)
    kept = [guided(row) for row in rows]
    differs = sum(1 for least, (size, _) in zip(smallest, kept) if size != least)
    saved = sum(size for size, _ in kept)
    lines = [(f"{len(rows)} TUs, {len(pairs)} objects: text + data the same in {agree} "
              f"({100 * agree / max(1, len(pairs)):.0f}%)"),
             (f"code generation, median per object: in the process "
              f"{1000 * statistics.median(p[2] for p in pairs):.1f} ms, by clang "
              f"{1000 * statistics.median(p[3] for p in pairs):.1f} ms; in all "
              f"{sum(p[2] for p in pairs):.2f} s against {sum(p[3] for p in pairs):.2f} s"),
             (f"clang building every list: {100 * (1 - best / max(1, baseline)):.2f}% below -Oz "
              f"({len(pairs) / max(1, len(rows)):.2f} builds a TU); guided by the in-process "
              f"objects: {100 * (1 - saved / max(1, baseline)):.2f}% "
              f"({sum(n for _, n in kept) / max(1, len(rows)):.2f} builds a TU), another object "
              f"on {differs} TUs, {saved - best} bytes more of clang -Oz's {baseline}")]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", help="a directory LLMCC_RECORD wrote")
    parser.add_argument("--lists", type=int, default=3, help="first popular lists (3)")
    args = parser.parse_args()
    bitcodes = sorted(glob.glob(os.path.join(args.records, "*.bc")))
    if not bitcodes:
        parser.error(f"no recorded TUs in {args.records}")
    lists = PopularAdvisor.load().lists[:args.lists]
    with tempfile.TemporaryDirectory(prefix="llmcc-emit-") as work:
        tools = recorded_evaluator(bitcodes[0], work, 300.0).tools
        lib = load(tools.opt, llvm_version(tools.version))
        rows = [measure(lib, path, lists, work) for path in bitcodes]
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

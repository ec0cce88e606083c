"""Apply all of a TU's candidate pass lists in one child process that loads LLVM once.

Starting `opt` costs ~20 ms here before it reads a byte (Debian's LLVM is one large shared library
whose relocations and static initialisers run at every start): on a typical TU more than the
passes themselves. A forked child loads that library through its C API and runs each list with
`LLVMRunPasses`, which is what opt runs, between the verifier passes opt adds. The bitcode it
writes is byte for byte what `optimize.opt_command` writes (tested), so reproducers and the
per-list path agree. A crash or hang in a pass ends the child, never the compile: the parent
reads one status line per list, kills the child past the time limit, and reports the list it
was on as a tool failure, as a failed opt run would be.
"""

from __future__ import annotations

import ctypes
import glob
import os
import select
import signal
import sys

from llmcc.toolchain import StepFailed, TimedOut

_P = ctypes.c_void_p
_UINT_P = ctypes.POINTER(ctypes.c_uint)
# the C API functions used, with their C signatures (llvm-c/*.h, LLVM 19)
_SIGNATURES = {
    "LLVMGetVersion": (None, [_UINT_P, _UINT_P, _UINT_P]),
    "LLVMContextCreate": (_P, []),
    "LLVMContextDispose": (None, [_P]),
    "LLVMCreateMemoryBufferWithMemoryRange": (_P, [ctypes.c_char_p, ctypes.c_size_t,
                                                   ctypes.c_char_p, ctypes.c_int]),
    "LLVMParseBitcodeInContext2": (ctypes.c_int, [_P, _P, ctypes.POINTER(_P)]),
    "LLVMGetTarget": (ctypes.c_char_p, [_P]),
    "LLVMGetTargetFromTriple": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_P),
                                               ctypes.POINTER(_P)]),
    "LLVMCreateTargetMachine": (_P, [_P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "LLVMDisposeTargetMachine": (None, [_P]),
    "LLVMCreatePassBuilderOptions": (_P, []),
    "LLVMDisposePassBuilderOptions": (None, [_P]),
    "LLVMRunPasses": (_P, [_P, ctypes.c_char_p, _P, _P]),
    "LLVMGetErrorMessage": (_P, [_P]),
    "LLVMWriteBitcodeToFile": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "LLVMDisposeModule": (None, [_P]),
    "LLVMDisposeMemoryBuffer": (None, [_P]),
}
# LLVMInitialize<name>TargetInfo/Target/TargetMC for every target this LLVM may have been built
# with (the C header's LLVMInitializeAllTargets is an inline function, not in the library)
_TARGETS = ("AArch64", "AMDGPU", "ARM", "AVR", "BPF", "Hexagon", "Lanai", "LoongArch", "M68k",
            "Mips", "MSP430", "NVPTX", "PowerPC", "RISCV", "Sparc", "SystemZ", "VE",
            "WebAssembly", "X86", "XCore", "ARC", "CSKY", "DirectX", "SPIRV", "Xtensa")
_CODEGEN_DEFAULT, _RELOC_DEFAULT, _RELOC_PIC, _CODE_MODEL_DEFAULT = 2, 0, 2, 0


def library_beside(opt: str) -> str | None:
    """The shared LLVM library `opt` (through symlinks) belongs to, if it has one beside it."""
    lib = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(opt))), "lib")
    found = sorted(glob.glob(os.path.join(lib, "libLLVM.so.*"))
                   + glob.glob(os.path.join(lib, "libLLVM-*.so")))
    return found[0] if found else None


def _load(library: str, version: str) -> ctypes.CDLL:
    """libLLVM with the signatures above and its targets registered; OSError if it is not the
    LLVM release `version` (opt's) or lacks a function."""
    lib = ctypes.CDLL(library)
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)  # AttributeError: not the C API this module speaks
        function.restype, function.argtypes = restype, argtypes
    numbers = [ctypes.c_uint() for _ in range(3)]
    lib.LLVMGetVersion(*(ctypes.byref(n) for n in numbers))
    found = ".".join(str(n.value) for n in numbers)
    if found != version:
        raise OSError(f"{library} is LLVM {found}, opt is {version}")
    for target in _TARGETS:
        for part in ("TargetInfo", "Target", "TargetMC"):
            initialise = getattr(lib, f"LLVMInitialize{target}{part}", None)
            if initialise is not None:
                initialise.restype, initialise.argtypes = None, []
                initialise()
    return lib


def _message(lib: ctypes.CDLL, error: _P) -> str:
    """The text of an LLVMErrorRef (leaked: the child exits soon after)."""
    return ctypes.string_at(lib.LLVMGetErrorMessage(error)).decode(errors="replace")


def _apply(lib: ctypes.CDLL, bitcode: bytes, pipeline: str, pic: bool, out: str) -> str | None:
    """Run `pipeline` on a fresh copy of the module and write it to `out`; the reason if not."""
    context = lib.LLVMContextCreate()
    buffer = lib.LLVMCreateMemoryBufferWithMemoryRange(bitcode, len(bitcode), b"input", 0)
    module = _P()
    unreadable = lib.LLVMParseBitcodeInContext2(context, buffer, ctypes.byref(module))
    lib.LLVMDisposeMemoryBuffer(buffer)  # the module does not keep it
    if unreadable:
        return "cannot read the bitcode"
    triple = lib.LLVMGetTarget(module)
    target, error = _P(), _P()
    if lib.LLVMGetTargetFromTriple(triple, ctypes.byref(target), ctypes.byref(error)):
        return f"no target for {triple.decode(errors='replace')}"
    machine = lib.LLVMCreateTargetMachine(target, triple, b"", b"", _CODEGEN_DEFAULT,
                                          _RELOC_PIC if pic else _RELOC_DEFAULT,
                                          _CODE_MODEL_DEFAULT)
    options = lib.LLVMCreatePassBuilderOptions()
    error = lib.LLVMRunPasses(module, f"verify,{pipeline},verify".encode(), machine, options)
    reason = _message(lib, error) if error else None
    if reason is None and lib.LLVMWriteBitcodeToFile(module, out.encode()):
        reason = f"cannot write {out}"
    lib.LLVMDisposePassBuilderOptions(options)
    lib.LLVMDisposeTargetMachine(machine)
    lib.LLVMDisposeModule(module)
    lib.LLVMContextDispose(context)
    return reason


def _child(status: int, blocked: set, library: str, version: str, bitcode: str,
           jobs: list[tuple[str, str]], pic: bool) -> None:
    """The forked child's whole life: one status line per job, then exit without running any of
    the parent's clean-up (its files, caches and buffered output are the parent's). Ctrl-C and
    SIGTERM, blocked since before the fork, end it at once instead of raising in its copy of the
    parent's Python code."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        if "faulthandler" in sys.modules:  # PYTHONFAULTHANDLER: it writes to its own copy of 2
            sys.modules["faulthandler"].disable()
        try:
            lib = _load(library, version)
            with open(bitcode, "rb") as handle:
                data = handle.read()
        except (OSError, AttributeError) as err:
            os.write(status, ("unavailable " + " ".join(str(err).split()) + "\n").encode())
            return
        for pipeline, out in jobs:
            reason = _apply(lib, data, pipeline, pic, out)
            line = "ok" if reason is None else "failed " + " ".join(reason.split())
            os.write(status, line.encode(errors="replace")[:4000] + b"\n")
    finally:
        os._exit(0)


class Unavailable(Exception):
    """The C API could not be used here (no library beside opt, another release, a missing
    function): run opt once per list instead."""


def apply_lists(library: str, version: str, bitcode: str, jobs: list[tuple[str, str]],
                pic: bool, timeout: float) -> list[StepFailed | None]:
    """For each (pipeline, output path) in `jobs`, in order: None once its bitcode is written,
    or the StepFailed that opt's run would have been. The list ends at the first failure that
    ended the child (a crash, or `timeout` seconds without finishing a list); the lists after it
    were not run. Unavailable if the child could not load LLVM."""
    read, write = os.pipe()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        pid = os.fork()
    except OSError as err:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(read)
        os.close(write)
        raise Unavailable(f"cannot fork: {err}") from None
    if pid == 0:
        _child(write, blocked, library, version, bitcode, jobs, pic)
    results: list[StepFailed | None] = []
    pending = b""
    try:
        os.close(write)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a Ctrl-C meanwhile raises here
        while len(results) < len(jobs):
            ready, _, _ = select.select([read], [], [], timeout)
            if not ready:
                results.append(TimedOut(f"opt (in one process) ran past {timeout:g}s"))
                break
            chunk = os.read(read, 65536)
            if not chunk:
                results.append(StepFailed(f"opt (in one process) {_ending(pid)}"))
                pid = 0
                break
            pending += chunk
            while b"\n" in pending and len(results) < len(jobs):
                line, pending = pending.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith("unavailable"):
                    raise Unavailable(text.removeprefix("unavailable "))
                results.append(None if text == "ok" else
                               StepFailed("opt exited 1: " + text.removeprefix("failed ")))
    finally:
        os.close(read)
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
    return results


def _ending(pid: int) -> str:
    """How the child that closed its status pipe early ended (it is reaped here)."""
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"died of signal {os.WTERMSIG(status)}"
    return f"exited {os.WEXITSTATUS(status)} before finishing a list"

"""A child process that loads LLVM once for one compile: the TU's IR as text, its lists applied.

Starting an LLVM tool costs ~20 ms here before it reads a byte (Debian's LLVM is one large
shared library whose relocations and static initialisers run at every start): on a typical TU
more than the work itself. Beyond clang, a compile needed llvm-dis once (the advisor's summary)
and opt once per candidate list. A forked child loads the library through its C API once and
does all of that: `LLVMPrintModuleToString` writes llvm-dis's text (tested), and
`LLVMRunPasses` between the verifier passes opt adds writes opt's bitcode byte for byte
(tested; `optimize.opt_command` leaves out the use-list order, as the C API does). A crash or
hang in LLVM ends the child, never the compile: the parent waits for each answer at most the
step time limit, kills the child, and reports the step as a tool failure, as a failed llvm-dis
or opt run would be.
"""

from __future__ import annotations

import ctypes
import glob
import json
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
    "LLVMDisposeMemoryBuffer": (None, [_P]),
    "LLVMParseBitcodeInContext2": (ctypes.c_int, [_P, _P, ctypes.POINTER(_P)]),
    "LLVMPrintModuleToString": (_P, [_P]),
    "LLVMDisposeMessage": (None, [_P]),
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
}
# LLVMInitialize<name>TargetInfo/Target/TargetMC for every target this LLVM may have been built
# with (the C header's LLVMInitializeAllTargets is an inline function, not in the library)
_TARGETS = ("AArch64", "AMDGPU", "ARM", "AVR", "BPF", "Hexagon", "Lanai", "LoongArch", "M68k",
            "Mips", "MSP430", "NVPTX", "PowerPC", "RISCV", "Sparc", "SystemZ", "VE",
            "WebAssembly", "X86", "XCore", "ARC", "CSKY", "DirectX", "SPIRV", "Xtensa")
_CODEGEN_DEFAULT, _RELOC_DEFAULT, _RELOC_PIC, _CODE_MODEL_DEFAULT = 2, 0, 2, 0


class Unavailable(Exception):
    """The C API cannot be used here (no library beside opt, another release, a missing
    function): llvm-dis and opt do the work, one run each."""


def library_beside(opt: str) -> str | None:
    """The shared LLVM library `opt` (through symlinks) belongs to, if it has one beside it."""
    lib = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(opt))), "lib")
    found = sorted(glob.glob(os.path.join(lib, "libLLVM.so.*"))
                   + glob.glob(os.path.join(lib, "libLLVM-*.so")))
    return found[0] if found else None


# --- the child ------------------------------------------------------------------------------------

def _load(library: str, version: str) -> ctypes.CDLL:
    """libLLVM with the signatures above and its targets registered; OSError if it is not the
    LLVM release `version` (opt's), AttributeError if it lacks a function."""
    lib = ctypes.CDLL(library)
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    numbers = [ctypes.c_uint() for _ in range(3)]
    lib.LLVMGetVersion(*(ctypes.byref(n) for n in numbers))
    found = ".".join(str(n.value) for n in numbers)
    if found != version:
        raise OSError(f"{library} is LLVM {found}, opt is {version}")
    initialise_targets(lib, ("TargetInfo", "Target", "TargetMC"))
    return lib


def initialise_targets(lib: ctypes.CDLL, parts: tuple[str, ...]) -> None:
    """Call LLVMInitialize<target><part> for each of `parts` of every target `lib` has."""
    for target in _TARGETS:
        for part in parts:
            initialise = getattr(lib, f"LLVMInitialize{target}{part}", None)
            if initialise is not None:
                initialise.restype, initialise.argtypes = None, []
                initialise()


class _Module:
    """A fresh copy of the TU in its own context, for one request."""

    def __init__(self, lib: ctypes.CDLL, bitcode: bytes, name: bytes) -> None:
        self.lib, self.context, self.module = lib, lib.LLVMContextCreate(), _P()
        buffer = lib.LLVMCreateMemoryBufferWithMemoryRange(bitcode, len(bitcode), name, 0)
        unreadable = lib.LLVMParseBitcodeInContext2(self.context, buffer,
                                                    ctypes.byref(self.module))
        lib.LLVMDisposeMemoryBuffer(buffer)  # the module does not keep it
        if unreadable:
            lib.LLVMContextDispose(self.context)
            raise ValueError("cannot read the bitcode")

    def __enter__(self) -> _P:
        return self.module

    def __exit__(self, *_) -> None:
        self.lib.LLVMDisposeModule(self.module)
        self.lib.LLVMContextDispose(self.context)


def _text(lib: ctypes.CDLL, module: _P) -> bytes:
    text = lib.LLVMPrintModuleToString(module)
    try:
        return ctypes.string_at(text)
    finally:
        lib.LLVMDisposeMessage(text)


def target_machine(lib: ctypes.CDLL, module: _P, pic: bool) -> _P:
    """A target machine for the module's triple, as opt makes one (the caller disposes of it);
    ValueError if LLVM has no such target."""
    triple = lib.LLVMGetTarget(module)
    target, error = _P(), _P()
    if lib.LLVMGetTargetFromTriple(triple, ctypes.byref(target), ctypes.byref(error)):
        raise ValueError(f"no target for {triple.decode(errors='replace')}")
    return lib.LLVMCreateTargetMachine(target, triple, b"", b"", _CODEGEN_DEFAULT,
                                       _RELOC_PIC if pic else _RELOC_DEFAULT, _CODE_MODEL_DEFAULT)


def _apply(lib: ctypes.CDLL, module: _P, pipeline: str, pic: bool, out: str) -> str | None:
    """Run `pipeline` on the module as opt runs it and write it to `out`; the reason if not
    (ValueError if LLVM has no target for the module)."""
    machine = target_machine(lib, module, pic)
    options = lib.LLVMCreatePassBuilderOptions()
    error = lib.LLVMRunPasses(module, f"verify,{pipeline},verify".encode(), machine, options)
    reason = ctypes.string_at(lib.LLVMGetErrorMessage(error)).decode(errors="replace") \
        if error else None
    if reason is None and lib.LLVMWriteBitcodeToFile(module, out.encode()):
        reason = f"cannot write {out}"
    lib.LLVMDisposePassBuilderOptions(options)
    lib.LLVMDisposeTargetMachine(machine)
    return reason


def _answer(answers: int, header: dict, payload: bytes = b"") -> None:
    os.write(answers, json.dumps(header).encode() + b"\n")
    rest = memoryview(payload)  # a TU's text can be megabytes: no copy per write
    while rest:
        rest = rest[os.write(answers, rest):]


def _serve(requests: int, answers: int, blocked: set, library: str, version: str,
           bitcode: str) -> None:
    """The forked child's whole life: answer each request line until the parent closes the
    pipe, then exit without running any of the parent's clean-up (its files, caches and
    buffered output are the parent's). Ctrl-C and SIGTERM, blocked since before the fork, end
    it at once instead of raising in its copy of the parent's Python code."""
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
            _answer(answers, {"unavailable": " ".join(str(err).split())})
            return
        _answer(answers, {"ready": True})
        for line in os.fdopen(requests, "rb"):
            request = json.loads(line)
            try:
                with _Module(lib, data, bitcode.encode()) as module:
                    if request["do"] == "text":
                        _answer(answers, {"bytes": len(text := _text(lib, module))}, text)
                        continue
                    reason = _apply(lib, module, request["pipeline"], request["pic"],
                                    request["out"])
            except ValueError as err:
                reason = str(err)
            _answer(answers, {"failed": " ".join(reason.split())} if reason else {"done": True})
    finally:
        os._exit(0)


# --- the parent -----------------------------------------------------------------------------------

class Worker:
    """One compile's child: `text()`, then `apply()` per list, then `close()`. Unavailable if
    it cannot load LLVM. After a crash or time-out it is closed, and every request fails."""

    def __init__(self, library: str, version: str, bitcode: str, timeout: float) -> None:
        self.timeout, self.ended = timeout, None
        requests_read, self._requests = os.pipe()
        self._answers, answers_write = os.pipe()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            self.pid = os.fork()
        except OSError as err:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            for fd in (requests_read, self._requests, self._answers, answers_write):
                os.close(fd)
            raise Unavailable(f"cannot fork: {err}") from None
        if self.pid == 0:
            os.close(self._requests)
            os.close(self._answers)
            _serve(requests_read, answers_write, blocked, library, version, bitcode)
        self._pending = b""
        try:
            os.close(requests_read)
            os.close(answers_write)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # a Ctrl-C meanwhile raises here
            first = self._read_line("load LLVM")
        except BaseException:
            self.close()
            raise
        if "unavailable" in first:
            self.close()
            raise Unavailable(first["unavailable"])

    def text(self) -> str:
        """The TU's IR as llvm-dis prints it; StepFailed if LLVM failed or the child ended."""
        size = self._ask({"do": "text"}, "disassemble the TU")["bytes"]
        text = bytearray(self._pending)  # grown in place: no copy per chunk of megabytes
        while len(text) < size:
            text += self._read("disassemble the TU")
        self._pending = bytes(text[size:])
        return text[:size].decode("utf-8", errors="replace")

    def apply(self, pipeline: str, out: str, pic: bool) -> None:
        """`pipeline` applied, its bitcode at `out`; StepFailed as opt's run would have been."""
        self._ask({"do": "apply", "pipeline": pipeline, "out": out, "pic": pic}, "run opt")

    def close(self) -> None:
        """Kill and reap the child (it is idle or stuck in LLVM); idempotent."""
        if self.pid:
            os.close(self._requests)
            os.close(self._answers)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.pid = 0
            self.ended = self.ended or "closed"

    def _ask(self, request: dict, what: str) -> dict:
        if self.ended:
            raise StepFailed(f"LLVM in one process could not {what}: it {self.ended}")
        try:
            os.write(self._requests, json.dumps(request).encode() + b"\n")
        except BrokenPipeError:
            self._end(what)
        answer = self._read_line(what)
        if "failed" in answer:
            raise StepFailed(f"LLVM in one process could not {what}: {answer['failed']}")
        return answer

    def _read_line(self, what: str) -> dict:
        while b"\n" not in self._pending:
            self._pending += self._read(what)
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _read(self, what: str) -> bytes:
        """More of the child's answer, within the time limit; else StepFailed, child closed."""
        ready, _, _ = select.select([self._answers], [], [], self.timeout)
        if not ready:
            self.ended = f"ran past {self.timeout:g}s"
            self.close()
            raise TimedOut(f"LLVM in one process could not {what}: it {self.ended}")
        chunk = os.read(self._answers, 1 << 20)
        if not chunk:
            self._end(what)
        return chunk

    def _end(self, what: str) -> None:
        """The child is gone mid-request: say how it ended, and fail the request."""
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        os.close(self._requests)
        os.close(self._answers)
        self.ended = (f"died of signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                      else f"exited {os.WEXITSTATUS(status)}")
        raise StepFailed(f"LLVM in one process could not {what}: it {self.ended}")

"""Apply candidate pass lists, measure, verify, choose: never worse than clang's own pipeline.

`choose` is the pure rule; `Evaluator` runs opt and clang's code generation for one TU.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmcc.codegen_job import generate, object_path
from llmcc.interface import refusal
from llmcc.invocation import codegen_args, hosted
from llmcc.objfile import NotAnObject, ObjectInfo, read_object
from llmcc.passes import PassList, never_run, to_pipeline, to_text
from llmcc.toolchain import StepFailed, TimedOut, Tools, llvm_version, opt_beside, run

BITCODE_MAGIC = b"BC\xc0\xde"


def first_line(stderr: bytes) -> str:
    """A tool's first line of complaint, short enough for a one-line warning."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[0][:200] if lines else "(no message)"


class BaselineUnusable(Exception):
    """Clang's own pipeline on the IR failed or printed diagnostics: let plain clang do it.

    `timed_out`: it only ran past the time limit, which a less busy machine may not.
    """

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


@dataclass
class Result:
    """One pass list (None: clang's pipeline) tried on one TU.

    `error` says why the list cannot be used. A rejection (the object would change the TU's
    interface) is a fact about the list; a `tool_failure` (opt or code generation crashed, hung,
    failed or wrote something unreadable) says nothing about it and must never be cached.
    `timed_out`: the failure was only running past the time limit, which a less busy machine
    may not.
    """

    passes: PassList | None
    size: int | None = None  # text + data, None if rejected
    error: str | None = None
    seconds: float = 0.0
    object: bytes = field(default=b"", repr=False)
    tool_failure: bool = False
    timed_out: bool = False

    def summary(self) -> dict:
        return {"passes": None if self.passes is None else to_text(self.passes),
                "size": self.size, "error": self.error, "seconds": round(self.seconds, 4),
                **({"tool_failure": True} if self.tool_failure else {})}


def choose(baseline: Result, candidates: list[Result]) -> Result:
    """The smallest verified candidate if strictly smaller than the baseline, else the baseline.

    Among equally small candidates the shortest list wins (cheaper to apply, easier to read).
    """
    best = baseline
    for result in candidates:
        if result.error is not None or result.size is None:
            continue
        shorter = best.passes is not None and len(result.passes) < len(best.passes)
        if result.size < best.size or (result.size == best.size and shorter):
            best = result
    return best


def opt_command(tools: Tools, pic: bool, passes: PassList, bitcode: str, out: str) -> list[str]:
    """The one way a pass list is applied (also written into reproducer scripts). Without the
    use-list order, as LLVM's C API writes bitcode: the same bytes as `llvm_worker` (tested)."""
    cmd = [tools.opt, "-preserve-bc-uselistorder=false", f"-passes={to_pipeline(passes)}",
           bitcode, "-o", out]
    if pic:
        cmd.insert(1, "-relocation-model=pic")
    return cmd


class Evaluator:
    """Runs the baseline and candidates for one TU inside a private temporary directory.

    `codegen` and `pic` describe the user's code generation (see invocation.Compile), so a TU
    recorded for training is measured exactly as a live compile. `codegen_job`, called once,
    when `prepare` first has two or more modules to generate code for, gives the `clang -cc1`
    command that generates them all in one process (llmcc.codegen_job), or None. In a build
    (`stop_after_failure`) no candidate runs after the first tool failure (`tool_failure` says
    which): a hanging opt costs one time-out per TU, not one per candidate. Offline studies
    measure every list. `language` ("c" or "c++") says which interface rule applies
    (llmcc.interface).
    """

    def __init__(self, codegen: tuple[str, ...], pic: bool, tools: Tools, bitcode: str,
                 workdir: str, timeout: float, stop_after_failure: bool = True,
                 codegen_job: Callable[[], list[str] | None] | None = None,
                 language: str = "c") -> None:
        self.codegen, self.pic, self.tools, self.bitcode = codegen, pic, tools, bitcode
        self.cxx = language == "c++"
        self.codegen_job = codegen_job
        self._job: list[str] | None | bool = False  # what codegen_job said; False: not asked
        self.workdir, self.timeout = workdir, timeout
        self.stop_after_failure = stop_after_failure
        self.baseline_info: ObjectInfo | None = None
        self.tool_failure: str | None = None
        self.hosted = hosted(codegen)
        self._declared: frozenset[str] | None = None
        self._bodies: dict[str, bool] | None | bool = None  # False: the IR could not be read
        self._text: str | None = None  # the TU's IR as text, once disassembled
        self._numbers = itertools.count(1)
        # optimised IR digest -> (size, error, object): different lists often produce the same
        # IR, and then code generation (half the cost of a candidate) need not run again
        self._by_ir: dict[str, tuple[int | None, str | None, bytes]] = {}
        # list -> its optimised bitcode, or why opt failed on it, from `prepare`
        self._prepared: dict[PassList, str | StepFailed] = {}
        self._worker = None  # the LLVM worker: not started yet; False: cannot be used

    def _codegen(self, bitcode: str, run_pipeline: bool) -> tuple[bytes, bytes]:
        obj = os.path.join(self.workdir, os.path.basename(bitcode) + ".o")  # never beside the input
        code, _, err = run([self.tools.clang,
                            *codegen_args(self.codegen, bitcode, obj, run_pipeline)], self.timeout)
        if code != 0:
            raise StepFailed(f"{os.path.basename(self.tools.clang)} (code generation) exited "
                             f"{code}: {first_line(err)}")
        with open(obj, "rb") as handle:
            return handle.read(), err

    def baseline(self) -> Result:
        """Clang's own pipeline for the user's level: byte-identical to a plain compile."""
        start = time.perf_counter()
        try:
            blob, err = self._codegen(self.bitcode, run_pipeline=True)
            info = read_object(blob)
        except (StepFailed, NotAnObject, OSError) as exc:
            raise BaselineUnusable(str(exc), isinstance(exc, TimedOut)) from None
        if err:
            raise BaselineUnusable("code generation printed diagnostics")
        self.baseline_info = info
        return Result(None, info.size, None, time.perf_counter() - start, blob)

    def _llvm(self):
        """The compile's LLVM worker (`llvm_worker`), started on first use; None where it
        cannot run, and llvm-dis and opt do its work one run at a time."""
        from llmcc import llvm_worker

        if self._worker is None:
            library = llvm_worker.library_beside(self.tools.opt)
            version = llvm_version(self.tools.version)
            try:
                self._worker = llvm_worker.Worker(library, version, self.bitcode, self.timeout) \
                    if library and version else False
            except (llvm_worker.Unavailable, StepFailed):
                self._worker = False
        return self._worker or None

    def disassemble(self, bitcode: str) -> str:
        """The TU's IR as text, for the advisor; StepFailed if LLVM cannot read it."""
        if bitcode == self.bitcode and self._text is not None:
            return self._text
        worker = self._llvm() if bitcode == self.bitcode else None
        text = worker.text() if worker is not None else self._llvm_dis(bitcode)
        if bitcode == self.bitcode:
            self._text = text
        return text

    def _llvm_dis(self, bitcode: str) -> str:
        """`bitcode` as text by llvm-dis, a process of its own (any thread may ask, where the
        LLVM worker serves one caller at a time)."""
        from llmcc.summary import disassemble
        from llmcc.toolchain import find_llvm_dis

        return disassemble(bitcode, find_llvm_dis(self.tools.opt, self.tools.clang), self.timeout)

    def prepare(self, lists: list[PassList]) -> None:
        """Apply `lists` ahead of `candidate` in the LLVM worker (an opt run spends ~20 ms just
        starting), and generate their objects in one clang run where `codegen_job` allows.
        Where the worker cannot be used, `candidate` runs opt and clang itself."""
        worker = self._llvm()
        for passes in dict.fromkeys(lists):
            if worker is None or worker.ended:
                return
            if passes not in self._prepared and not never_run(passes):
                out = self._new_path()
                try:
                    worker.apply(to_pipeline(passes), out, self.pic)
                    self._prepared[passes] = out
                except StepFailed as err:
                    self._prepared[passes] = err
        self._generate_together([p for p in self._prepared.values() if isinstance(p, str)])

    def _generate_together(self, paths: list[str]) -> None:
        """The objects of the distinct modules among `paths` by one clang run, where there are
        two or more and a `codegen_job`; `candidate` generates any this did not (a failure here
        is met again there, where it is reported as the list's)."""
        modules: dict[str, str] = {}
        for path in paths:
            try:
                digest = self._digest(path)
            except (StepFailed, OSError):
                continue
            if digest not in self._by_ir:
                modules.setdefault(digest, path)
        if len(modules) < 2 or self.codegen_job is None:
            return
        if self._job is False:
            try:
                self._job = self.codegen_job()
            except StepFailed:
                self._job = None
        if not self._job:
            return
        try:
            objects = generate(self._job, list(modules.values()), self.timeout)
        except StepFailed:
            return
        for digest, path in modules.items():
            try:
                self._by_ir[digest] = self._check(objects[path])
            except NotAnObject:
                continue

    def close(self) -> None:
        """End the LLVM worker, if one was started."""
        if self._worker:
            self._worker.close()

    def _new_path(self) -> str:
        return os.path.join(self.workdir, f"candidate{next(self._numbers)}.bc")

    def candidate(self, passes: PassList) -> Result:
        """Apply `passes` (unless `prepare` did), generate code, and check the object still fits
        the baseline."""
        assert self.baseline_info is not None, "run the baseline first"
        if self.stopped:
            return Result(passes, error=f"not tried after: {self.tool_failure}", tool_failure=True)
        refused = never_run(passes)
        if refused:  # whatever proposed it (an old cache, a foreign model), it never runs
            return Result(passes, error=f"never run: {refused}")
        start = time.perf_counter()
        prepared = self._prepared.pop(passes, None)
        optimised = prepared if isinstance(prepared, str) else self._new_path()
        result = Result(passes)
        try:
            if isinstance(prepared, StepFailed):
                raise prepared
            if prepared is None:
                code, _, err = run(opt_command(self.tools, self.pic, passes, self.bitcode,
                                               optimised), self.timeout)
                if code != 0:
                    raise StepFailed(f"opt exited {code}: {first_line(err)}")
            ir_digest = self._digest(optimised)
            if ir_digest not in self._by_ir:
                self._by_ir[ir_digest] = self._measure(optimised)
            result.size, result.error, result.object = self._by_ir[ir_digest]
        except (StepFailed, OSError) as exc:
            self.tool_failure = result.error = str(exc)
            result.tool_failure = True
            result.timed_out = isinstance(exc, TimedOut)
        finally:
            for path in (optimised, optimised + ".o", object_path(optimised)):
                if os.path.exists(path):
                    os.unlink(path)
        result.seconds = time.perf_counter() - start
        return result

    @property
    def stopped(self) -> bool:
        """True once a tool failed in a build: the remaining candidates are not run."""
        return self.tool_failure is not None and self.stop_after_failure

    @property
    def distinct_ir(self) -> int:
        """How many different optimised modules the candidates produced (each generated once)."""
        return len(self._by_ir)

    @staticmethod
    def _digest(optimised: str) -> str:
        """What identifies an optimised module: lists that give the same one share its object."""
        with open(optimised, "rb") as handle:
            ir = handle.read()
        if not ir.startswith(BITCODE_MAGIC):
            raise StepFailed("opt wrote something that is not LLVM bitcode")
        return hashlib.blake2b(ir, digest_size=20).hexdigest()

    def _measure(self, optimised: str) -> tuple[int | None, str | None, bytes]:
        """(size, None, object) for optimised IR that keeps the interface, else (None, why, b"").

        Code generation that fails, or an object that is not one, is StepFailed: a tool failure.
        """
        blob, _ = self._codegen(optimised, run_pipeline=False)
        try:
            return self._check(blob)
        except NotAnObject as exc:
            raise StepFailed(f"code generation wrote no object: {exc}") from None

    def _check(self, blob: bytes) -> tuple[int | None, str | None, bytes]:
        """_measure's answer for an object; NotAnObject if it is not one."""
        info = read_object(blob)
        reason = refusal(info, self.baseline_info, self.hosted, self.declared, self.bodies,
                         self.cxx)
        return (None, reason, b"") if reason else (info.size, None, blob)

    def bodies(self) -> dict[str, bool] | None:
        """The functions the TU's frontend IR defines available_externally, each with whether
        it is always-inline (llmcc.interface); None if it cannot be read, which refuses what
        depends on them rather than guess."""
        if self._bodies is False:
            return None
        if self._bodies is None:
            from llmcc.summary import available_externally

            try:  # the advisor's text, else llvm-dis's (a search measures in threads)
                text = self._text if self._text is not None else self._llvm_dis(self.bitcode)
                self._bodies = available_externally(text)
            except (StepFailed, OSError):
                self._bodies = False
                return None
        return self._bodies

    def declared(self) -> frozenset[str]:
        """Functions the TU's frontend IR declares (llvm-nm, once); none if it cannot be read,
        which refuses what depends on them rather than guess."""
        if self._declared is None:
            nm = os.path.join(os.path.dirname(opt_beside(self.tools.clang)), "llvm-nm")
            try:
                code, out, _ = run([nm, "--undefined-only", "--format=just-symbols",
                                    self.bitcode], self.timeout)
            except StepFailed:
                code, out = 1, b""
            self._declared = frozenset(out.decode(errors="replace").split()) if code == 0 \
                else frozenset()
        return self._declared

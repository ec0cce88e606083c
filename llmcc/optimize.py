"""Apply candidate pass lists, measure, verify, choose: never worse than clang's own pipeline.

`choose` is the pure rule; `Evaluator` runs opt and clang's code generation for one TU.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from dataclasses import dataclass, field

from llmcc.invocation import codegen_args
from llmcc.objfile import NotAnObject, ObjectInfo, read_object, same_interface
from llmcc.passes import PassList, to_pipeline, to_text
from llmcc.toolchain import StepFailed, Tools, run


class BaselineUnusable(Exception):
    """Clang's own pipeline on the IR failed or printed diagnostics: let plain clang do it."""


@dataclass
class Result:
    """One pass list (None: clang's pipeline) tried on one TU."""

    passes: PassList | None
    size: int | None = None  # text + data, None if rejected
    error: str | None = None
    seconds: float = 0.0
    object: bytes = field(default=b"", repr=False)

    def summary(self) -> dict:
        return {"passes": None if self.passes is None else to_text(self.passes),
                "size": self.size, "error": self.error, "seconds": round(self.seconds, 4)}


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
    """The one way a pass list is applied (also written into reproducer scripts)."""
    cmd = [tools.opt, f"-passes={to_pipeline(passes)}", bitcode, "-o", out]
    if pic:
        cmd.insert(1, "-relocation-model=pic")
    return cmd


class Evaluator:
    """Runs the baseline and candidates for one TU inside a private temporary directory.

    `codegen` and `pic` describe the user's code generation (see invocation.Compile), so a TU
    recorded for training is measured exactly as a live compile.
    """

    def __init__(self, codegen: tuple[str, ...], pic: bool, tools: Tools, bitcode: str,
                 workdir: str, timeout: float) -> None:
        self.codegen, self.pic, self.tools, self.bitcode = codegen, pic, tools, bitcode
        self.workdir, self.timeout = workdir, timeout
        self.baseline_info: ObjectInfo | None = None
        self._numbers = itertools.count(1)
        # optimised IR digest -> (size, error, object): different lists often produce the same
        # IR, and then code generation (half the cost of a candidate) need not run again
        self._by_ir: dict[str, tuple[int | None, str | None, bytes]] = {}

    def _codegen(self, bitcode: str, run_pipeline: bool) -> tuple[bytes, bytes]:
        obj = os.path.join(self.workdir, os.path.basename(bitcode) + ".o")  # never beside the input
        code, _, err = run([self.tools.clang,
                            *codegen_args(self.codegen, bitcode, obj, run_pipeline)], self.timeout)
        if code != 0:
            raise StepFailed(f"codegen exited {code}: {err.decode(errors='replace')[:200]}")
        with open(obj, "rb") as handle:
            return handle.read(), err

    def baseline(self) -> Result:
        """Clang's own pipeline for the user's level: byte-identical to a plain compile."""
        start = time.perf_counter()
        try:
            blob, err = self._codegen(self.bitcode, run_pipeline=True)
            info = read_object(blob)
        except (StepFailed, NotAnObject, OSError) as exc:
            raise BaselineUnusable(str(exc)) from None
        if err:
            raise BaselineUnusable("code generation printed diagnostics")
        self.baseline_info = info
        return Result(None, info.size, None, time.perf_counter() - start, blob)

    def candidate(self, passes: PassList) -> Result:
        """Apply `passes`, generate code, and check the object still fits the baseline."""
        assert self.baseline_info is not None, "run the baseline first"
        start = time.perf_counter()
        optimised = os.path.join(self.workdir, f"candidate{next(self._numbers)}.bc")
        result = Result(passes)
        try:
            code, _, err = run(opt_command(self.tools, self.pic, passes, self.bitcode, optimised),
                               self.timeout)
            if code != 0:
                raise StepFailed(f"opt exited {code}: {err.decode(errors='replace')[:200]}")
            with open(optimised, "rb") as handle:
                ir_digest = hashlib.blake2b(handle.read(), digest_size=20).hexdigest()
            if ir_digest not in self._by_ir:
                self._by_ir[ir_digest] = self._measure(optimised)
            result.size, result.error, result.object = self._by_ir[ir_digest]
        except (StepFailed, OSError) as exc:
            result.error = str(exc)
        finally:
            for path in (optimised, optimised + ".o"):
                if os.path.exists(path):
                    os.unlink(path)
        result.seconds = time.perf_counter() - start
        return result

    @property
    def distinct_ir(self) -> int:
        """How many different optimised modules the candidates produced (each generated once)."""
        return len(self._by_ir)

    def _measure(self, optimised: str) -> tuple[int | None, str | None, bytes]:
        """(size, None, object) for optimised IR that keeps the interface, else (None, why, b"")."""
        try:
            blob, _ = self._codegen(optimised, run_pipeline=False)
            info = read_object(blob)
        except (StepFailed, NotAnObject) as exc:
            return None, str(exc), b""
        reason = same_interface(info, self.baseline_info)
        return (None, reason, b"") if reason else (info.size, None, blob)

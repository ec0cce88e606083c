"""A circuit breaker for broken tools (and a dead shared cache): after repeated failures, stop
calling them for a while.

Without it a crashing or hanging `opt` costs one failure (or one time-out) per TU for a whole
build. The state lives in the decision cache (so `make -j` jobs share it), keyed by what the
tools are on disk, so a repaired or replaced tool starts with a closed breaker. The rules are
pure functions of the stored state and the clock.
"""

from __future__ import annotations

import os

FAILURES_TO_OPEN = 3  # compiles in a row whose candidates hit a tool failure
OPEN_SECONDS = 600.0  # then plain clang for this long (or until a tool changes)


def tools_key(*programs: str) -> str:
    """Identity of the programs as files: real path, size and modification time."""
    from llmcc.direct import digest

    parts = []
    for program in programs:
        try:
            stat = os.stat(program)
            parts.append(f"{os.path.realpath(program)}\0{stat.st_size}\0{stat.st_mtime_ns}")
        except OSError:
            parts.append(f"{program}\0missing")
    return digest("\0\0".join(parts).encode())


def is_open(state: dict | None, now: float) -> bool:
    """True while the tools must not be called."""
    return bool(state) and state.get("until", 0.0) > now


def after_compile(state: dict | None, failed: bool, now: float,
                  failures_to_open: int = FAILURES_TO_OPEN,
                  open_seconds: float = OPEN_SECONDS) -> dict | None:
    """The state to store after a compile that used the service; None: nothing to write.

    A compile without a failure closes the breaker; a failure counts, and the
    `failures_to_open`-th in a row opens it (once reopened, one more failure opens it again).
    """
    if not failed:
        return {"failures": 0, "until": 0.0} if state and state.get("failures") else None
    failures = (state or {}).get("failures", 0) + 1
    return {"failures": failures,
            "until": now + open_seconds if failures >= failures_to_open else 0.0}

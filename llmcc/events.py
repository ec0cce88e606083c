"""What happened to each compile: the `LLMCC_LOG` JSON lines and the counters behind
`llmcc-ctl stats`.

Counters live in an append-only file in the cache dir: each call appends one short line under
an exclusive lock (cheap enough for a passthrough), and when the file grows past a limit the
lines are folded into a totals file, so it stays small.
"""

from __future__ import annotations

import json
import os

from llmcc.files import write_atomic

STATS_LINES = "stats.jsonl"
STATS_TOTALS = "stats-totals.json"
FOLD_AT = 1 << 20  # bytes of stats lines before they are folded into the totals

# Outcomes, as written in the stats and the log.
PASSTHROUGH = "passthrough"
DIRECT_HIT = "direct_hit"
HIT = "hit"
MISS = "miss"
FALLBACK = "fallback"
COMPILE_ERROR = "compile_error"


def append_line(path: str, record: dict) -> None:
    """Append one JSON line atomically; a missing or read-only place is silently skipped."""
    import fcntl

    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def count(cache_dir: str, record: dict) -> None:
    """Add one compile to the stats (outcome, sizes, seconds)."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError:
        return
    path = os.path.join(cache_dir, STATS_LINES)
    append_line(path, record)
    try:
        if os.path.getsize(path) > FOLD_AT:
            fold(cache_dir)
    except OSError:
        pass


def add_totals(totals: dict, record: dict) -> dict:
    """Pure: the totals after one more compile record."""
    out = dict(totals)
    out["compiles"] = out.get("compiles", 0) + 1
    key = "outcome_" + record.get("outcome", "unknown")
    out[key] = out.get(key, 0) + 1
    for field in ("baseline_size", "size", "seconds"):
        if record.get(field) is not None:
            out[field] = out.get(field, 0) + record[field]
    return out


def read_totals(cache_dir: str) -> dict:
    totals: dict = {}
    try:
        with open(os.path.join(cache_dir, STATS_TOTALS)) as handle:
            totals = json.load(handle)
    except (OSError, ValueError):
        totals = {}
    try:
        with open(os.path.join(cache_dir, STATS_LINES)) as handle:
            for line in handle:
                try:
                    totals = add_totals(totals, json.loads(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return totals


def fold(cache_dir: str) -> None:
    """Move the stats lines into the totals file, under the same lock the writers take."""
    import fcntl

    lines = os.path.join(cache_dir, STATS_LINES)
    fd = os.open(lines, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        totals = read_totals(cache_dir)
        write_atomic(os.path.join(cache_dir, STATS_TOTALS), json.dumps(totals).encode())
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def reset(cache_dir: str) -> None:
    for name in (STATS_LINES, STATS_TOTALS):
        try:
            os.unlink(os.path.join(cache_dir, name))
        except FileNotFoundError:
            pass

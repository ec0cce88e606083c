"""What happened to each compile: the `LLMCC_LOG` JSON lines and the counters behind
`llmcc-ctl stats`.

Counters live in an append-only file in the cache dir: each call appends one short line
(`outcome baseline_size size seconds`, `-` where unknown) under an exclusive lock, cheap enough
for a passthrough (no json import; nor does the log's line), and when the file grows past a
limit the lines are folded into a totals file, so it stays small.
"""

from __future__ import annotations

import os

from llmcc.files import write_atomic

STATS_LINES = "stats.lines"
STATS_TOTALS = "stats-totals.json"
FOLD_AT = 1 << 20  # bytes of stats lines before they are folded into the totals

# Outcomes, as written in the stats and the log.
PASSTHROUGH = "passthrough"
DIRECT_HIT = "direct_hit"
HIT = "hit"
MISS = "miss"
REMOTE_HIT = "remote_hit"  # decided on another machine (shared cache), measured here
FALLBACK = "fallback"
_COUNTED = ("baseline_size", "size", "seconds")


def log(path: str, event: dict) -> None:
    """LLMCC_LOG: one JSON line per compile."""
    try:
        line = to_json(event)
    except TypeError:  # something `to_json` does not write: json's own rules
        import json

        line = json.dumps(event, separators=(",", ":"))
    _append(path, line + "\n")


def to_json(value) -> str:
    """json.dumps(value, separators=(",", ":")) for the values an event holds (str, int, float,
    bool, None, and lists, tuples and str-keyed dicts of them), TypeError for others. Without
    importing json, whose import (re, enum) costs about 6 ms: more than a third of a logged
    cache hit or passthrough."""
    from _json import encode_basestring_ascii as quote  # what json.dumps uses, in C

    if isinstance(value, str):
        return quote(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        from math import isinf, isnan

        if isnan(value) or isinf(value):
            return "NaN" if isnan(value) else "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return "{" + ",".join(f"{quote(key)}:{to_json(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} is not written by to_json")


def _append(path: str, line: str) -> None:
    """Append one line atomically; a missing or read-only place is silently skipped."""
    try:
        append_line(path, line)
    except OSError:
        pass


def append_line(path: str, line: str) -> None:
    """Append `line` by one write under an exclusive lock, so parallel writers never
    interleave; OSError where it cannot (a caller whose record must not be lost sees it)."""
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def count(cache_dir: str, record: dict) -> None:
    """Add one compile to the stats (outcome, sizes, seconds)."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError:
        return
    path = os.path.join(cache_dir, STATS_LINES)
    fields = [record.get("outcome", "unknown")]
    fields += ["-" if record.get(name) is None else str(record[name]) for name in _COUNTED]
    _append(path, " ".join(fields) + "\n")
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
    for field in _COUNTED:
        if record.get(field) is not None:
            out[field] = out.get(field, 0) + record[field]
    return out


def parse_line(line: str) -> dict:
    """A stats line back into a record (ValueError if it is damaged)."""
    outcome, *numbers = line.split()
    if len(numbers) != len(_COUNTED):
        raise ValueError(f"bad stats line {line!r}")
    record: dict = {"outcome": outcome}
    for name, text in zip(_COUNTED, numbers, strict=True):
        if text != "-":
            record[name] = float(text) if name == "seconds" else int(text)
    return record


def read_totals(cache_dir: str) -> dict:
    import json

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
                    totals = add_totals(totals, parse_line(line))
                except ValueError:
                    continue
    except OSError:
        pass
    return totals


def fold(cache_dir: str) -> None:
    """Move the stats lines into the totals file, under the same lock the writers take."""
    import fcntl
    import json

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

"""Direct mode (ccache's idea): skip even the frontend when nothing it read has changed.

A manifest, keyed by the call (arguments, working directory, environment, source digest),
lists the headers the frontend read last time with their digests. When all still match, the
stored decision is reused without running clang at all. Files that use __DATE__/__TIME__
are never recorded, and neither is a header changed during the compile.
"""

from __future__ import annotations

import os

# hashlib's blake2b itself: importing hashlib would load OpenSSL on every hit, for nothing
from _blake2 import blake2b

# Environment variables that change what the frontend reads or produces.
ENVIRONMENT = ("CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "OBJC_INCLUDE_PATH",
               "SOURCE_DATE_EPOCH", "SDKROOT", "MACOSX_DEPLOYMENT_TARGET", "LANG", "LC_ALL",
               "LC_MESSAGES")
_VOLATILE = (b"__DATE__", b"__TIME__", b"__TIMESTAMP__")
MAX_ENTRIES = 8  # per manifest: the last few header sets seen for one call


class Unrecordable(Exception):
    """A file the TU reads cannot be trusted for direct mode."""


def digest(data: bytes) -> str:
    return blake2b(data, digest_size=20).hexdigest()


def _read(path: str, not_after: float | None = None) -> bytes:
    try:
        with open(path, "rb") as handle:
            if not_after is not None and os.fstat(handle.fileno()).st_mtime >= not_after:
                raise Unrecordable(f"{path} changed during the compile")
            return handle.read()
    except OSError as err:
        raise Unrecordable(f"{path}: {err.strerror}") from None


def file_digest(path: str, not_after: float | None = None) -> str:
    """Digest of a file's content; Unrecordable if it is volatile or newer than `not_after`."""
    data = _read(path, not_after)
    if any(marker in data for marker in _VOLATILE):
        raise Unrecordable(f"{path} uses __DATE__ or __TIME__")
    return digest(data)


def current_digest(path: str) -> str:
    """Digest of a file's content now. A header that has taken up __DATE__ since it was
    recorded has another digest: no need to look for it again on every hit."""
    return digest(_read(path))


def call_key(parts: list[str], environ: dict[str, str]) -> str:
    """The manifest key for one call; `parts` already holds args, cwd, identities."""
    env = [f"{name}={environ[name]}" for name in ENVIRONMENT if name in environ]
    return digest("\0".join([*parts, *env]).encode("utf-8", "surrogateescape"))


def headers_read(listing: str) -> list[str]:
    """Unique paths from clang's CC_PRINT_HEADERS file, in first-seen order."""
    seen: dict[str, None] = {}
    for path in listing.splitlines():
        if path:
            seen.setdefault(path, None)
    return list(seen)


def record(headers: list[str], started: float) -> list[tuple[str, str]]:
    """Digests of the headers for a new manifest entry (Unrecordable if any is unfit)."""
    return [(path, file_digest(path, not_after=started)) for path in headers]


def match(entries: list[dict], check=current_digest) -> dict | None:
    """The first manifest entry whose headers all still have their recorded digests."""
    for entry in entries:
        try:
            if all(check(path) == recorded for path, recorded in entry["headers"]):
                return entry
        except Unrecordable:
            continue
    return None


def add_entry(entries: list[dict], entry: dict) -> list[dict]:
    """The manifest with `entry` first, older duplicates dropped, at most MAX_ENTRIES long."""
    rest = [e for e in entries if e["headers"] != entry["headers"]]
    return [entry, *rest][:MAX_ENTRIES]

"""What a direct-mode hit reads, kept as plain files the way ccache keeps its cache: one file
per entry under `direct/<first two hex digits of the key>/`.

A warm rebuild is mostly direct hits, and diskcache's import, open and close (SQLite, pickle,
a WAL checkpoint at close) cost a hit 20–40 ms on two cores, more than a small TU's whole
compile with plain clang. Here a hit is one read. Eviction is least-recently-used as in
ccache: a hit sets its file's modification time, and a write that takes its subdirectory past
its share of the size limit removes the oldest files there. Values are dicts of str, bytes,
numbers, None, lists and tuples, written with marshal (pickle's import alone costs a hit
milliseconds) behind a header and a checksum, so a damaged file is never unmarshalled.
"""

from __future__ import annotations

import marshal
import os
import sys

# hashlib's blake2b itself: importing hashlib would load OpenSSL on every hit, for nothing
from _blake2 import blake2b

from llmcc.cache import CacheError
from llmcc.files import write_atomic

DIRECTORY = "direct"
FANOUT = 256  # subdirectories, by the key's first byte
# Bump the number when the shape of stored values changes: older files then read as misses.
# marshal's format may change between Python versions, so the version is part of it.
HEADER = b"llmcc hits 1 py%d.%d\n" % sys.version_info[:2]
CHECKSUM = 16  # bytes of blake2b over the marshalled value
KEEP = 0.9  # a subdirectory over its share is trimmed to this fraction of it


class HitStore:
    """Entries by (namespace, key): `get` and `put` as in llmcc.cache.disk.DiskCache."""

    def __init__(self, directory: str, size_limit: int) -> None:
        self.directory = directory
        self.root = os.path.join(directory, DIRECTORY)
        self.share = size_limit // FANOUT  # bytes one subdirectory may hold

    def _path(self, namespace: str, key: str) -> str:
        return os.path.join(self.root, key[:2], f"{namespace}-{key[2:]}")

    def get(self, namespace: str, key: str) -> dict | None:
        """The entry, or None for none or one an older llmcc or Python wrote (CacheError if
        the file is damaged or unreadable: the caller's miss then writes a good one)."""
        path = self._path(namespace, key)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise CacheError(f"cache read failed: {err}") from None
        if not data.startswith(HEADER):
            return None
        checksum, payload = data[len(HEADER):][:CHECKSUM], data[len(HEADER) + CHECKSUM:]
        if blake2b(payload, digest_size=CHECKSUM).digest() != checksum:
            raise CacheError(f"cache entry {path} is damaged; it is written again")
        value = marshal.loads(payload)
        try:
            os.utime(path)  # recently used; a read-only cache still serves the hit
        except OSError:
            pass
        return value if isinstance(value, dict) else None

    def put(self, namespace: str, key: str, value: dict) -> None:
        payload = marshal.dumps(value)
        data = HEADER + blake2b(payload, digest_size=CHECKSUM).digest() + payload
        path = self._path(namespace, key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_atomic(path, data)
        except OSError as err:
            raise CacheError(f"cannot write the cache in {self.directory}: "
                             f"{err.strerror or err}") from None
        self._trim(os.path.dirname(path))

    def _trim(self, subdirectory: str) -> None:
        """Remove the least recently used files of a subdirectory over its share. Another job
        may be removing the same files: whatever is gone already is simply skipped."""
        try:
            files = []
            for entry in os.scandir(subdirectory):
                info = entry.stat(follow_symlinks=False)
                files.append((info.st_mtime, info.st_size, entry.path))
        except OSError:
            return
        total = sum(size for _, size, _ in files)
        if total <= self.share:
            return
        for _, size, path in sorted(files):
            if total <= self.share * KEEP:
                break
            try:
                os.unlink(path)
            except OSError:
                continue
            total -= size

    def _files(self) -> list[str]:
        return [os.path.join(top, name) for top, _, names in os.walk(self.root)
                for name in names]

    def volume(self) -> int:
        total = 0
        for path in self._files():
            try:
                total += os.lstat(path).st_size
            except OSError:
                pass
        return total

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        import shutil

        count = len(self._files())
        try:
            shutil.rmtree(self.root)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise CacheError(f"cache clear failed: {err}") from None
        return count

"""The local decision cache in the user cache dir, with a size cap and eviction: diskcache
for decisions, and plain files (llmcc.cache.hits) for what a direct-mode hit reads.

diskcache gives atomic writes and safe concurrent access from many processes (SQLite in WAL
mode plus files written then renamed), which is what parallel `make -j` needs. It is opened
only when a compile first needs it, which a direct-mode hit never does.
"""

from __future__ import annotations

import os

from llmcc.cache import CacheError
from llmcc.cache.hits import DIRECTORY, HitStore

# Bump when the shape of stored values changes: older entries then read as misses.
FORMAT = 1
# What a direct-mode hit reads (the manifest, with the decision it leads to, and the checked
# tools) lives in plain files, which take this share of the size limit.
HIT_NAMESPACES = ("direct", "tools")
HIT_SHARE = 0.25


class DiskCache:
    def __init__(self, directory: str, size_limit: int) -> None:
        self.directory = directory
        hit_limit = int(size_limit * HIT_SHARE)
        self._size_limit = size_limit - hit_limit
        self._hits = HitStore(directory, hit_limit)
        self._cache = None
        self._open_failure: CacheError | None = None
        self._failure: CacheError | None = None

    def _fail(self, err: CacheError):
        """Raise the first failure to open or write instead of each later one: a read-only or
        full cache is one warning per compile, whichever store meets it first."""
        if self._failure is None:
            self._failure = err
        raise self._failure

    def _db(self):
        """diskcache's Cache, opened on first use (CacheError if it cannot be)."""
        if self._cache is None:
            if self._open_failure is not None:
                self._fail(self._open_failure)
            import sqlite3

            import diskcache

            try:
                self._cache = diskcache.Cache(self.directory, size_limit=self._size_limit,
                                              eviction_policy="least-recently-used",
                                              timeout=10)
            except (OSError, sqlite3.Error) as err:
                self._open_failure = CacheError(f"cannot open the cache in {self.directory}: "
                                                f"{err} (`llmcc-ctl clear` starts it afresh)")
                self._fail(self._open_failure)
        return self._cache

    def get(self, namespace: str, key: str) -> dict[str, object] | None:
        if namespace in HIT_NAMESPACES:
            return self._hits.get(namespace, key)
        cache = self._db()
        try:
            value = cache.get(f"{namespace}:{key}")
        except Exception as err:  # noqa: BLE001 - unpickling a damaged entry can raise anything
            raise CacheError(f"cache read failed: {type(err).__name__}: {err}") from None
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            return None
        return value

    def put(self, namespace: str, key: str, value: dict[str, object]) -> None:
        if namespace in HIT_NAMESPACES:
            try:
                self._hits.put(namespace, key, value)
            except CacheError as err:
                self._fail(err)
            return
        import sqlite3

        cache = self._db()
        try:
            cache.set(f"{namespace}:{key}", {**value, "format": FORMAT})
        except (OSError, sqlite3.Error) as err:
            self._fail(CacheError(f"cache write failed: {err}"))

    @staticmethod
    def remove(directory: str) -> None:
        """Delete a cache that cannot even be opened: llmcc's own files and nothing else."""
        import re
        import shutil

        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name.startswith("cache.db"):
                os.unlink(path)
            elif (re.fullmatch(r"[0-9a-f]{2}", name) or name == DIRECTORY) and os.path.isdir(path):
                shutil.rmtree(path)

    def keys(self, namespace: str) -> list[str]:
        prefix = namespace + ":"
        return [key[len(prefix):] for key in self._db().iterkeys()
                if isinstance(key, str) and key.startswith(prefix)]

    def clear(self) -> int:
        """Remove every entry of both stores; returns how many there were."""
        import sqlite3

        cache = self._db()
        try:
            return cache.clear() + self._hits.clear()
        except (OSError, sqlite3.Error) as err:
            raise CacheError(f"cache clear failed: {err}") from None

    def volume(self) -> int:
        return self._db().volume() + self._hits.volume()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

"""The local decision cache: diskcache in the user cache dir, with a size cap and eviction.

diskcache gives atomic writes and safe concurrent access from many processes (SQLite in WAL
mode plus files written then renamed), which is what parallel `make -j` needs.
"""

from __future__ import annotations

import os
import sqlite3

from llmcc.cache import CacheError

# Bump when the shape of stored values changes: older entries then read as misses.
FORMAT = 1


class DiskCache:
    def __init__(self, directory: str, size_limit: int) -> None:
        import diskcache

        self.directory = directory
        try:
            self._cache = diskcache.Cache(directory, size_limit=size_limit,
                                          eviction_policy="least-recently-used", timeout=10)
        except (OSError, sqlite3.Error) as err:
            raise CacheError(f"cannot open the cache in {directory}: {err} "
                             "(`llmcc-ctl clear` starts it afresh)") from None

    def get(self, namespace: str, key: str) -> dict[str, object] | None:
        try:
            value = self._cache.get(f"{namespace}:{key}")
        except Exception as err:  # noqa: BLE001 - unpickling a damaged entry can raise anything
            raise CacheError(f"cache read failed: {type(err).__name__}: {err}") from None
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            return None
        return value

    def put(self, namespace: str, key: str, value: dict[str, object]) -> None:
        try:
            self._cache.set(f"{namespace}:{key}", {**value, "format": FORMAT})
        except (OSError, sqlite3.Error) as err:
            raise CacheError(f"cache write failed: {err}") from None

    @staticmethod
    def remove(directory: str) -> None:
        """Delete a cache that cannot even be opened: diskcache's own files and nothing else."""
        import re
        import shutil

        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name.startswith("cache.db"):
                os.unlink(path)
            elif re.fullmatch(r"[0-9a-f]{2}", name) and os.path.isdir(path):
                shutil.rmtree(path)

    def keys(self, namespace: str) -> list[str]:
        prefix = namespace + ":"
        return [key[len(prefix):] for key in self._cache.iterkeys()
                if isinstance(key, str) and key.startswith(prefix)]

    def clear(self) -> int:
        try:
            return self._cache.clear()
        except (OSError, sqlite3.Error) as err:
            raise CacheError(f"cache clear failed: {err}") from None

    def volume(self) -> int:
        return self._cache.volume()

    def close(self) -> None:
        self._cache.close()

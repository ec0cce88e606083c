"""Decision caches. Keys are hex digests; values are plain dicts (see `driver.py`).

Every backend failure (read-only or full directory, corrupt database, dead server) becomes a
CacheError, which the caller treats as a miss or a skipped write: a cache never breaks a build.
"""

from __future__ import annotations


class CacheError(Exception):
    """The cache could not be read or written."""

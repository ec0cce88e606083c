"""The shared decision cache: Redis, behind the local disk cache (`LLMCC_CACHE_URL`).

A team's machines share decisions, not objects: the pass list, the sizes it gave and the
advisor that chose it, as JSON, under the same key the local cache uses (which names llmcc's
version, clang's, the advisor's identity and k). Nothing read back is trusted: the driver parses
the list against the vocabulary and measures it here before use, so a poisoned entry can at
worst cost one candidate's time. Redis is asked with timeouts of tens of milliseconds; the
first failure (down, slow, wrong password, full) warns once and opens a breaker kept in the
local cache, and for the next minute the build runs on the local cache alone.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit, urlunsplit

from llmcc import breaker
from llmcc.cache import CacheError

KEY_PREFIX = "llmcc:decision:"
TIMEOUT = 0.05  # seconds, to connect and for each reply
OPEN_SECONDS = 60.0  # local cache only for this long after a failure
MAX_VALUE = 4096  # bytes: a decision is a few hundred; anything larger is not one
FIELDS = {"passes": (str, type(None)), "baseline_size": int, "size": int, "advisor": str}


def redacted(url: str) -> str:
    """The address without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else "***@"
    return urlunsplit(parts._replace(netloc=user + parts.netloc.rsplit("@", 1)[1]))


def encode(decision: dict, advisor: str) -> bytes:
    """What is shared of a decision: never the object."""
    return json.dumps({"passes": decision["passes"], "baseline_size": decision["baseline_size"],
                       "size": decision["size"], "advisor": advisor}).encode()


def decode(raw: bytes | None) -> dict | None:
    """A decision read back, if it has the expected shape; None for anything else."""
    if raw is None or len(raw) > MAX_VALUE:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != set(FIELDS):
        return None
    if not all(isinstance(value[name], kind) and not isinstance(value[name], bool)
               for name, kind in FIELDS.items()):
        return None
    return value


class SharedCache:
    """Redis behind the local cache; `local` (a DiskCache or None) keeps the breaker state."""

    def __init__(self, url: str, local, warnings: list[str]) -> None:
        self.url, self.local, self.warnings = url, local, warnings
        self._breaker_key = "redis:" + url
        self._client = None

    def _state(self) -> dict | None:
        try:
            return self.local.get("breaker", self._breaker_key) if self.local else None
        except CacheError:
            return None

    def available(self) -> bool:
        return not breaker.is_open(self._state(), time.time())

    def _connect(self):
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=TIMEOUT,
                                                socket_connect_timeout=TIMEOUT,
                                                retry_on_timeout=False)
        return self._client

    def _failed(self, err: Exception) -> None:
        state = breaker.after_compile(self._state(), True, time.time(), failures_to_open=1,
                                      open_seconds=OPEN_SECONDS)
        if self.local is not None:
            try:
                self.local.put("breaker", self._breaker_key, state)
            except CacheError:
                pass
        self.warnings.append(f"shared cache {redacted(self.url)} unavailable "
                             f"({type(err).__name__}: {err}); using the local cache only for "
                             f"{OPEN_SECONDS:g} s")

    def get(self, key: str) -> dict | None:
        """A well-formed shared decision for `key`, or None (absent, malformed, unreachable)."""
        if not self.available():
            return None
        try:
            return decode(self._connect().get(KEY_PREFIX + key))
        except Exception as err:  # noqa: BLE001 - redis raises many kinds; each means "down"
            self._failed(err)
            return None

    def put(self, key: str, decision: dict, advisor: str) -> None:
        if not self.available():
            return
        try:
            self._connect().set(KEY_PREFIX + key, encode(decision, advisor))
        except Exception as err:  # noqa: BLE001 - as in get: full, read-only, down
            self._failed(err)

    def ping(self) -> None:
        """For `llmcc-ctl doctor`: raises what the connection raises."""
        self._connect().ping()

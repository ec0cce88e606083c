"""The `popular` advisor: the same short list of pass lists for every TU.

The lists come from `popular.json`, written by `python -m llmcc.train.popular` from searches
on the training packages; trying a few of them and keeping the smallest result (with clang's
own pipeline as the fallback) is a strong baseline any model advisor must beat.
"""

from __future__ import annotations

import hashlib
import os

from llmcc.advisor import AdvisorError
from llmcc.passes import PassList, PassListError, never_run, parse

DATA_FILE = os.path.join(os.path.dirname(__file__), "popular.json")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise AdvisorError(f"popular advisor data {path}: {err.strerror}") from None


def _identity_of(blob: bytes) -> str:
    return "popular:" + hashlib.blake2b(blob, digest_size=8).hexdigest()


def identity(path: str = DATA_FILE) -> str:
    return _identity_of(_read(path))


class PopularAdvisor:
    """Plain class: `identity()` above runs before every cache lookup, keep this module light."""

    def __init__(self, lists: tuple[PassList, ...], identity: str) -> None:
        self.lists, self.identity = lists, identity

    @classmethod
    def load(cls, path: str = DATA_FILE) -> PopularAdvisor:
        import json

        blob = _read(path)
        try:
            entries = json.loads(blob)["lists"]
            lists = tuple(passes for passes in (parse(entry["passes"]) for entry in entries)
                          if not never_run(passes))
        except (ValueError, KeyError, TypeError, PassListError) as err:
            raise AdvisorError(f"popular advisor data {path} is corrupt: {err}") from None
        if not lists:
            raise AdvisorError(f"popular advisor data {path} holds no pass lists")
        return cls(lists, _identity_of(blob))

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        return list(self.lists[:k])

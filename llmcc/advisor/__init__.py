"""Where candidate pass lists come from.

An advisor has a cheap `identity` (part of every cache key, computed without loading anything
heavy, so a cache hit never imports a model runtime) and `suggest`, which returns up to k
pass lists, best first. `LLMCC_ADVISOR` picks one by name.
"""

from __future__ import annotations

from typing import Protocol

from llmcc.passes import PassList


class AdvisorError(Exception):
    """The advisor cannot be used: missing or corrupt data, unknown name."""


class Advisor(Protocol):
    identity: str

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        """Up to k validated pass lists for the TU in `bitcode_path`, best first."""
        ...


class NoAdvisor:
    """Baseline only: llmcc behaves like clang, with its cache."""

    identity = "none"

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        return []


def advisor_identity(name: str) -> str:
    """The advisor's identity without loading it (cheap: used before every cache lookup)."""
    if name == "none":
        return NoAdvisor.identity
    if name == "popular":
        from llmcc.advisor import popular

        return popular.identity()
    raise AdvisorError(f"unknown advisor {name!r} (known: popular, none)")


def load_advisor(name: str) -> Advisor:
    if name == "none":
        return NoAdvisor()
    if name == "popular":
        from llmcc.advisor import popular

        return popular.PopularAdvisor.load()
    raise AdvisorError(f"unknown advisor {name!r} (known: popular, none)")

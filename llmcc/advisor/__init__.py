"""Where candidate pass lists come from.

An advisor has a cheap `identity` (part of every cache key, computed without loading anything
heavy, so a cache hit never imports a model runtime) and `suggest`, which returns up to k
pass lists, best first. `LLMCC_ADVISOR` picks one by name. The `search` advisor goes further:
it measures as it searches (`tune`), so it is handed the evaluator itself.
"""

from __future__ import annotations

from llmcc.passes import PassList

NAMES = ("popular", "model", "forest", "none", "search")


class AdvisorError(Exception):
    """The advisor cannot be used: missing or corrupt data, unknown name."""


class NoAdvisor:
    """Baseline only: llmcc behaves like clang, with its cache."""

    identity = "none"

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        return []


def _unknown(name: str) -> AdvisorError:
    return AdvisorError(f"unknown advisor {name!r} (known: {', '.join(NAMES)})")


def advisor_identity(settings) -> str:
    """The advisor's identity without loading it (cheap: used before every cache lookup)."""
    name = settings.advisor
    if name == "none":
        return NoAdvisor.identity
    if name == "model":
        from llmcc.advisor.model import identity

        return identity(settings)
    if name == "forest":
        from llmcc.advisor.forest import identity

        return identity(settings)
    if name in ("popular", "search"):
        from llmcc.advisor import popular

        if name == "popular":
            return popular.identity()
        from llmcc.advisor.search import identity

        return identity(settings, popular.identity())
    raise _unknown(name)


class PopularInstead:
    """The popular lists a model or forest falls back to, read only when one does: a damaged
    popular data file concerns no TU the model or forest answered."""

    def __init__(self) -> None:
        self._lists = None

    def instead(self, k: int, reason: str) -> tuple[list[PassList], str]:
        """(the first k popular lists, the advisor's failure): the reason, and what was tried."""
        from llmcc.advisor.popular import PopularAdvisor

        try:
            if self._lists is None:
                self._lists = PopularAdvisor.load().lists
        except AdvisorError as err:
            return [], f"{reason}; the popular lists could not be tried either: {err}"
        return list(self._lists[:k]), f"{reason}; tried the popular lists instead"


def load_advisor(settings, disassemble=None):
    """The advisor `settings` name: an object with `identity` and `suggest(bitcode_path, k)`,
    as the module says (no typing.Protocol: a cache hit imports this module, and typing costs
    milliseconds). The model and forest advisors summarise TUs from `disassemble(bitcode_path)`,
    their IR as text (StepFailed if unreadable; optimize.Evaluator.disassemble)."""
    name = settings.advisor
    if name == "none":
        return NoAdvisor()
    if name == "model":
        from llmcc.advisor.model import ModelAdvisor

        return ModelAdvisor(settings, disassemble, PopularInstead())
    if name == "forest":
        from llmcc.advisor.forest import ForestAdvisor

        return ForestAdvisor(settings, disassemble, PopularInstead())
    if name in ("popular", "search"):
        from llmcc.advisor import popular

        seeds = popular.PopularAdvisor.load()
        if name == "popular":
            return seeds
        from llmcc.advisor.search import SearchAdvisor

        return SearchAdvisor(settings, seeds)
    raise _unknown(name)

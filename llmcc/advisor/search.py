"""The `search` advisor: autotune every TU (llmcc.search), seeded with the popular lists.

Slow by design (a budget of evaluations per TU); for users who want the smallest code whatever
the compile time, and for making training labels. Decisions land in the same cache, so only the
first build pays.
"""

from __future__ import annotations

import random

from llmcc.advisor.popular import PopularAdvisor
from llmcc.passes import PassList


def identity(settings, seeds_identity: str) -> str:
    return f"search:{settings.search_budget}:{settings.search_seconds:g}:{seeds_identity}"


class SearchAdvisor:
    def __init__(self, settings, seeds: PopularAdvisor) -> None:
        self.budget, self.seconds = settings.search_budget, settings.search_seconds
        self.seeds = seeds
        self.identity = identity(settings, seeds.identity)

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        return self.seeds.suggest(bitcode_path, k)

    def tune(self, evaluator, seed: str, progress=None) -> list:
        """Every result tried; the search is seeded by the IR key, so reruns agree."""
        from llmcc.search import minimise, tune

        best, tried = tune(evaluator, list(self.seeds.lists), self.budget, self.seconds,
                           random.Random(seed), progress=progress)
        if best.passes is not None:
            shorter = minimise(evaluator, best.passes, best.size)
            if shorter != best.passes:
                tried.append(evaluator.candidate(shorter))
        return tried

"""Per-TU autotuning: seeded lists, random lists, and mutations of the best lists so far.

Every candidate is measured by `optimize.Evaluator`, exactly as the wrapper measures (same
baseline, size and symbol check), so whatever the search returns is safe to use and never
larger than clang's own pipeline. `minimise` then drops passes that do not help, which makes
labels short and readable (the LLM Compiler paper's lists averaged ~3.8 passes).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from llmcc.optimize import Evaluator, Result, choose
from llmcc.passes import (
    DRAWABLE,
    OZ_PIPELINE,
    REQUIRED_FIRST,
    PassList,
    random_list,
    validate,
)


def mutate(passes: PassList, rng: random.Random) -> PassList:
    """One small edit: insert, delete, replace or swap a pass (always-inline stays first)."""
    body = list(passes[1:]) if passes and passes[0] == REQUIRED_FIRST else list(passes)
    edit = rng.choice(("insert", "delete", "replace", "swap") if len(body) > 1 else ("insert",))
    if edit == "insert":
        body.insert(rng.randint(0, len(body)), rng.choice(DRAWABLE))
    elif edit == "delete":
        del body[rng.randrange(len(body))]
    elif edit == "replace":
        body[rng.randrange(len(body))] = rng.choice(DRAWABLE)
    else:
        i = rng.randrange(len(body) - 1)
        body[i], body[i + 1] = body[i + 1], body[i]
    return validate(body or [rng.choice(DRAWABLE)])


def tune(evaluator: Evaluator, seeds: list[PassList], budget: int, seconds: float,
         rng: random.Random, jobs: int = 2, explore: float = 0.3,
         progress: Callable[[int, Result], None] | None = None,
         clock: Callable[[], float] = time.monotonic) -> tuple[Result, list[Result]]:
    """Search up to `budget` evaluations or `seconds` (as `clock` counts them); returns (best,
    everything tried).

    The baseline must have been measured. LLVM's -Oz pipeline and the seeds go first; after them
    each round draws a fresh random list with probability `explore`, else mutates one of the
    five best lists so far.
    """
    baseline = Result(None, evaluator.baseline_info.size)
    tried: list[Result] = []
    seen: set[PassList] = set()
    queue = [OZ_PIPELINE, *(validate(s) for s in seeds)]
    deadline = clock() + seconds
    with ThreadPoolExecutor(max_workers=jobs) as workers:
        while len(tried) < budget and clock() < deadline and not evaluator.stopped:
            batch: list[PassList] = []
            while len(batch) < min(jobs * 2, budget - len(tried)) and len(seen) < 10 * budget:
                if queue:
                    passes = queue.pop(0)
                else:
                    ranked = sorted((r for r in tried if r.size is not None),
                                    key=lambda r: r.size)[:5]
                    passes = (random_list(rng) if not ranked or rng.random() < explore
                              else mutate(rng.choice(ranked).passes, rng))
                if passes not in seen:
                    seen.add(passes)
                    batch.append(passes)
            if not batch:
                break
            for result in workers.map(evaluator.candidate, batch):
                tried.append(result)
                if progress:
                    progress(len(tried), result)
    return choose(baseline, tried), tried


def minimise(evaluator: Evaluator, passes: PassList, size: int) -> PassList:
    """Drop passes one at a time (last first) while the object stays at most `size` bytes."""
    current = validate(passes)
    i = len(current) - 1
    while i >= 1 and not evaluator.stopped:  # index 0 is always-inline, which is required
        shorter = current[:i] + current[i + 1:]
        result = evaluator.candidate(shorter)
        if result.size is not None and result.size <= size:
            current = shorter
        i -= 1
    return current

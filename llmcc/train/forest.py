"""A forest of trees on the numbers of the TU summary: the model's teacher (`llmcc-ctl train
--teacher forest`) and its yardstick (bench/summary_forest.py).

Every number of a TU's summary becomes a feature, log(1 + n), and an extremely randomised forest
(scikit-learn's ExtraTreesRegressor) learns each broadcast list's log size ratio to clang -Oz.
With 2,000-odd training TUs such a forest chooses lists for unseen TUs better than the llama
reading the same summary as text (README, "What the summary holds"). Taught the forest's
expectations instead of its own measured sizes, one llama gained at k = 1 and 2 on validation;
a 3-member ensemble so taught, with a shorter prompt, lost to the shipped model on fresh test
TUs (README, "Teaching the model what a forest expects"). A TU is taught what
forests that never saw its package expect (`out_of_fold`): what the forest knows of TUs like
it, not its own noise.

Only training imports this module (scikit-learn is in the `train` extra); compiles never do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor

SECTIONS = ("calls", "globals", "module", "rest", "size_buckets", "opcodes", "types",
            "intrinsics", "library_calls")
LARGEST = 3  # the largest functions' instruction counts, one feature each
TREES = 200
LEAF = 5                # fewest training TUs in a leaf
MAX_FEATURES = 0.3      # of the features each split draws from
FOLDS = 5


def features(summary: dict) -> dict[str, float]:
    """The summary's numbers by name: every count of its sections and the largest functions'
    instruction counts."""
    named = {f"{section}.{key}": value for section in SECTIONS
             for key, value in (summary.get(section) or {}).items()
             if isinstance(value, (int, float))}
    largest = sorted((f["instructions"] for f in summary.get("functions", [])), reverse=True)
    named.update((f"largest.{i}", largest[i] if i < len(largest) else 0)
                 for i in range(LARGEST))
    return named


def feature_names(summaries: Sequence[dict]) -> list[str]:
    """Every feature any of `summaries` has, in a fixed order."""
    return sorted({name for s in summaries for name in features(s)})


def feature_matrix(summaries: Sequence[dict], names: Sequence[str]) -> np.ndarray:
    """One row of log(1 + n) per summary, 0 for a feature it lacks."""
    table = [features(s) for s in summaries]
    return np.log1p(np.array([[max(0.0, t.get(n, 0)) for n in names] for t in table], float))


def log_ratios(baselines: Sequence[int], sizes: Sequence[Sequence[int | None]]) -> np.ndarray:
    """log(size / baseline) of each list per TU, 0 where the list does not shrink the object
    or was refused: what a TU keeps when it tries that list."""
    return np.array([[min(0.0, math.log(s / baseline)) if s is not None else 0.0 for s in row]
                     for baseline, row in zip(baselines, sizes, strict=True)])


def grow(inputs: np.ndarray, ratios: np.ndarray, seed: int = 0, trees: int = TREES,
         leaf: int = LEAF) -> ExtraTreesRegressor:
    """A forest learning `ratios` (log_ratios) from `inputs` (feature_matrix), grown on every
    core; the same trees and predictions for the same seed, whatever the number of cores."""
    grown = ExtraTreesRegressor(n_estimators=trees, min_samples_leaf=leaf,
                                max_features=MAX_FEATURES, n_jobs=-1,
                                random_state=seed).fit(inputs, ratios)
    # Threads would add the trees' predictions up in whatever order they finish.
    return grown.set_params(n_jobs=1)


def out_of_fold(summaries: Sequence[dict], packages: Sequence[str], ratios: np.ndarray,
                seed: int = 0, folds: int = FOLDS) -> np.ndarray:
    """Each TU's expected log ratios (the rows of `ratios`) as a forest predicts them that
    learnt from the other folds of packages (sorted, dealt round-robin): no TU's expectation
    has seen its own package."""
    names = feature_names(summaries)
    inputs = feature_matrix(summaries, names)
    ranked = sorted(set(packages))
    fold = np.array([ranked.index(p) % folds for p in packages])
    expected = np.zeros_like(ratios)
    for f in sorted(set(fold.tolist())):
        held = fold == f
        if held.all():  # a single package: nothing outside it to learn from
            return ratios.copy()
        expected[held] = grow(inputs[~held], ratios[~held], seed).predict(inputs[held])
    return expected

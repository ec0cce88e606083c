"""A forest of trees on the numbers of the TU summary: grown into the forest advisor's file
(`llmcc-ctl train --forest`, read by llmcc.advisor.forest), and the model's teacher
(`llmcc-ctl train --teacher forest`).

Every number of a TU's summary becomes a feature, log(1 + n), and an extremely randomised forest
(scikit-learn's ExtraTreesRegressor) learns each broadcast list's log size ratio to clang -Oz.
With 2,000-odd training TUs such a forest chooses lists for unseen TUs better than the llama
reading the same summary as text (docs/model.md, "What the summary holds"). The file a compile reads
holds the trees as plain arrays, so compiles import neither scikit-learn nor numpy. Taught the
forest's expectations instead of its own measured sizes, one llama gained at k = 1 and 2 on
validation; a 3-member ensemble so taught, with a shorter prompt, lost to the shipped model on
fresh test TUs (docs/model.md, "Teaching the model what a forest expects"). A TU is taught what
forests that never saw its package expect (`out_of_fold`): what the forest knows of TUs like
it, not its own noise.

Only training imports this module (scikit-learn is in the `train` extra); compiles never do.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from array import array
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor

from llmcc.advisor.forest import ARRAYS, MAGIC, RATIO_SCALE, features, inputs
from llmcc.files import write_atomic
from llmcc.summary import SUMMARY_VERSION

TREES = 200
LEAF = 5                # fewest training TUs in a leaf
MAX_FEATURES = 0.3      # of the features each split draws from
FOLDS = 5


def feature_names(summaries: Sequence[dict]) -> list[str]:
    """Every feature any of `summaries` has, in a fixed order."""
    return sorted({name for s in summaries for name in features(s)})


def feature_matrix(summaries: Sequence[dict], names: Sequence[str]) -> np.ndarray:
    """One row of log(1 + n) per summary, 0 for a feature it lacks: computed as a compile
    computes it (llmcc.advisor.forest.inputs), so the trees split on the same numbers."""
    index = {name: i for i, name in enumerate(names)}
    return np.array([inputs(s, index) for s in summaries], np.float32)


def log_ratios(baselines: Sequence[int], sizes: Sequence[Sequence[int | None]]) -> np.ndarray:
    """log(size / baseline) of each list per TU, 0 where the list does not shrink the object
    or was refused: what a TU keeps when it tries that list."""
    return np.array([[min(0.0, math.log(s / baseline)) if s is not None else 0.0 for s in row]
                     for baseline, row in zip(baselines, sizes, strict=True)])


def grow(inputs: np.ndarray, ratios: np.ndarray, seed: int = 0, trees: int = TREES,
         leaf: int = LEAF, max_features: float = MAX_FEATURES) -> ExtraTreesRegressor:
    """A forest learning `ratios` (log_ratios) from `inputs` (feature_matrix), grown on every
    core; the same trees and predictions for the same seed, whatever the number of cores."""
    grown = ExtraTreesRegressor(n_estimators=trees, min_samples_leaf=leaf,
                                max_features=max_features, n_jobs=-1,
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


def _below(threshold: float) -> float:
    """The largest float32 not above `threshold`: a float32 input is <= one exactly when it is
    <= the other, so the shipped thresholds split as the trees did."""
    rounded = np.float32(threshold)
    if float(rounded) > threshold:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return float(rounded)


def to_arrays(grown: ExtraTreesRegressor, inputs: np.ndarray, ratios: np.ndarray) -> dict:
    """`grown` (grown on `inputs`, learning `ratios`) as the arrays llmcc.advisor.forest walks:
    nodes renumbered in preorder, each leaf's training TUs, each TU's savings as int16."""
    if len(inputs) > 65535:
        raise ValueError("more training TUs than the file's u16 members hold")
    leaves = grown.apply(inputs)
    out: dict[str, list] = {name: [] for name, _, _ in ARRAYS}
    out["bounds"].append(0)
    for column, estimator in enumerate(grown.estimators_):
        tree = estimator.tree_
        order, stack = [], [0]
        while stack:
            node = stack.pop()
            order.append(node)
            if tree.children_left[node] >= 0:
                stack += [tree.children_right[node], tree.children_left[node]]
        number = {old: len(out["feature"]) + i for i, old in enumerate(order)}
        out["roots"].append(number[0])
        members: dict[int, list[int]] = {}
        for tu, leaf in enumerate(leaves[:, column].tolist()):
            members.setdefault(leaf, []).append(tu)
        for old in order:
            if tree.children_left[old] >= 0:
                out["feature"].append(int(tree.feature[old]))
                out["threshold"].append(_below(float(tree.threshold[old])))
                out["right"].append(number[int(tree.children_right[old])])
            else:
                out["feature"].append(-1)
                out["threshold"].append(0.0)
                out["right"].append(len(out["bounds"]) - 1)
                out["members"] += members[old]
                out["bounds"].append(len(out["members"]))
    out["saving_start"].append(0)
    for row in np.clip(np.rint(ratios * RATIO_SCALE), -32768, 0).astype(int).tolist():
        for j, value in enumerate(row):
            if value < 0:
                out["saving_list"].append(j)
                out["saving_ratio"].append(value)
        out["saving_start"].append(len(out["saving_list"]))
    return out


def forest_file(arrays: dict, names: list[str], texts: list[str], made: dict) -> bytes:
    """The bytes of a forest file (llmcc.advisor.forest's docstring says the layout). Only the
    features some split asks for are named, so a compile reads and computes no others."""
    used = sorted({f for f in arrays["feature"] if f >= 0})
    position = {f: i for i, f in enumerate(used)}
    arrays = {**arrays, "feature": [position.get(f, -1) for f in arrays["feature"]]}
    header = {"features": [names[f] for f in used], "lists": texts, "summary_version": SUMMARY_VERSION,
              "trees": len(arrays["roots"]), "nodes": len(arrays["feature"]),
              "leaves_plus_one": len(arrays["bounds"]), "members": len(arrays["members"]),
              "tus_plus_one": len(arrays["saving_start"]), "savings": len(arrays["saving_list"]),
              "made": made}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    parts = [MAGIC, len(text).to_bytes(4, "little"), text]
    for name, code, _ in ARRAYS:
        values = array(code, arrays[name])
        if sys.byteorder == "big":
            values.byteswap()
        parts.append(values.tobytes())
    return b"".join(parts)


def shipped(summaries: Sequence[dict], ratios: np.ndarray, texts: list[str], seed: int = 0,
            trees: int = TREES, leaf: int = LEAF, made: dict | None = None,
            max_features: float = MAX_FEATURES, learned: np.ndarray | None = None) -> bytes:
    """The forest file of a forest grown on `summaries` learning `ratios` (log_ratios of the
    lists `texts`), or `learned` where given (bench/forest_knobs.py's other targets: they change
    which TUs share a leaf, and the file still holds each TU's `ratios`)."""
    names = feature_names(summaries)
    inputs = feature_matrix(summaries, names)
    grown = grow(inputs, ratios if learned is None else learned, seed, trees, leaf, max_features)
    return forest_file(to_arrays(grown, inputs, ratios), names, texts, made or {})


def training_set(dataset: str, added: Sequence[str] = ()) -> tuple[list[dict], list[dict],
                                                                    list[str]]:
    """What `llmcc-ctl train --forest` grows on: the train rows of `dataset` (and of each
    `added` DIR labelled by `llmcc-ctl label DIR`), their pool rows (llmcc.train.headroom) and
    the broadcast lists' texts; ValueError if there is nothing to grow on. A list llmcc never
    runs (llmcc.passes.NEVER_RUN) counts as refused, as `llmcc-ctl eval` counts it: the trees
    learn only from what a compile may try."""
    from llmcc.train import labelled
    from llmcc.train.evaluate import runnable, usable
    from llmcc.train.headroom import as_pool_rows

    registry = labelled.read_lists(dataset)
    indices = registry.get("broadcast", [])
    rows = labelled.read_with_added(dataset, registry, list(added))  # NotComparable: ValueError
    train = [r for r in usable(rows) if r["split"] == "train"]
    if not train or not indices:
        raise ValueError(f"no train TUs with broadcast sizes in {dataset}")
    texts = [registry["lists"][i] for i in indices]
    return train, runnable(as_pool_rows(train, indices, False), texts), texts


def main(argv: list[str] | None = None, prog: str = "python -m llmcc.train.forest") -> int:
    """`llmcc-ctl train --forest`: grow the forest on the dataset's train split and write the
    file the forest advisor reads."""
    from llmcc.advisor.forest import FOREST_FILE
    from llmcc.train import labelled

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    parser.add_argument("--out", default=FOREST_FILE,
                        help="file to write (default: the forest llmcc ships)")
    parser.add_argument("--dataset", default=labelled.DATASET_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trees", type=int, default=TREES)
    parser.add_argument("--leaf", type=int, default=LEAF, help="fewest training TUs in a leaf")
    parser.add_argument("--add", action="append", default=[], metavar="DIR",
                        help="also grow on a directory of records labelled by llmcc-ctl label")
    args = parser.parse_args(argv)
    try:
        train, pool, texts = training_set(args.dataset, args.add)
    except ValueError as err:
        parser.error(str(err))
    ratios = log_ratios([r["baseline"] for r in pool], [r["sizes"] for r in pool])
    made = {"command": " ".join([prog, *argv]), "seed": args.seed, "trees": args.trees,
            "leaf": args.leaf, "max_features": MAX_FEATURES, "tus": len(train),
            "dataset_sha256": hashlib.sha256(json.dumps(
                [[r["tu"], r["summary"], p["baseline"], p["sizes"]] for r, p in zip(train, pool)],
                sort_keys=True).encode()).hexdigest()}
    blob = shipped([r["summary"] for r in train], ratios, texts, args.seed, args.trees, args.leaf,
                   made)
    write_atomic(args.out, blob)
    print(f"{args.out}: {len(blob) / 1e6:.1f} MB, {args.trees} trees on {len(train)} TUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())

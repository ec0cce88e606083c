"""The forest (llmcc.train.forest): what it reads of a summary; as the model's teacher (`llmcc-ctl
train --teacher forest`), that a TU is taught only what other packages show and that it is
reproducible; as the forest advisor (llmcc.advisor.forest), that the file it ships walks to the
same leaves as the trees scikit-learn grew and that a broken file is refused."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest

from llmcc import summary
from llmcc.advisor import AdvisorError
from llmcc.advisor.forest import (
    LARGEST,
    RATIO_SCALE,
    Forest,
    features,
    inputs,
    weighted_greedy,
)
from llmcc.train import forest
from llmcc.train.fit import examples_from_rows, forest_sizes

LISTS = 3


BASE = summary.summarize_ir("define i32 @f(i32 %0) {\n  %2 = add i32 %0, 1\n  ret i32 %2\n}\n")


def _summary(rng: random.Random) -> dict:
    """A real summary's shape, its counts drawn at random."""
    drawn = copy.deepcopy(BASE)
    drawn["module"].update(functions=rng.randint(1, 50), instructions=rng.randint(10, 5000))
    drawn["calls"]["external"] = rng.randint(0, 40)
    drawn["opcodes"].update(add=rng.randint(0, 300), select=rng.randint(0, 30))
    drawn["library_calls"] = {"exit": rng.randint(1, 3)} if rng.random() < 0.5 else {}
    drawn["functions"][0]["instructions"] = rng.randint(1, 900)
    return drawn


def _rows(seed: int = 0, packages: int = 6, per_package: int = 20) -> list[dict]:
    """Train rows whose best list follows the `add` count: something a forest can learn."""
    rng = random.Random(seed)
    rows = []
    for p in range(packages):
        for t in range(per_package):
            drawn = _summary(rng)
            adds = drawn["opcodes"]["add"]
            baseline = rng.randint(500, 5000)
            sizes = [round(baseline * (0.95 if adds > 150 else 1.01)),
                     round(baseline * (0.97 if adds <= 150 else 1.0)),
                     round(baseline * rng.uniform(0.98, 1.02))]
            broadcast = {str(i): s for i, s in enumerate(sizes)}
            if t % 7 == 0:
                del broadcast["2"]  # refused by the symbol rule
            rows.append({"tu": f"p{p}t{t}", "package": f"pkg{p}", "split": "train",
                         "summary": drawn, "baseline": baseline, "broadcast": broadcast})
    return rows


TEXTS = ["always-inline default<Oz>", "always-inline mem2reg default<Oz>", "always-inline sroa<modify-cfg>"]
REGISTRY = {"broadcast": list(range(LISTS)), "lists": TEXTS}


def _ratios(rows: list[dict]) -> np.ndarray:
    return forest.log_ratios([r["baseline"] for r in rows],
                             [[r["broadcast"].get(str(i)) for i in range(LISTS)] for r in rows])


def test_features_are_the_summarys_numbers_and_its_largest_functions():
    small = {"module": {"functions": 4, "note": "text is no feature"}, "opcodes": {"add": 7},
             "functions": [{"instructions": 5}, {"instructions": 90}]}
    named = features(small)
    assert named["module.functions"] == 4 and named["opcodes.add"] == 7
    assert "module.note" not in named
    assert [named[f"largest.{i}"] for i in range(LARGEST)] == [90, 5, 0]
    matrix = forest.feature_matrix([small, {}], ["opcodes.add", "opcodes.sub"])
    assert matrix.tolist() == [[np.float32(math.log1p(7)), 0.0], [0.0, 0.0]]


def test_log_ratios_keep_only_savings():
    ratios = forest.log_ratios([100, 200], [[90, 110, None], [200, 100, 50]])
    assert ratios[0].tolist() == [math.log(0.9), 0.0, 0.0]
    assert ratios[1].tolist() == [0.0, math.log(0.5), math.log(0.25)]


def test_out_of_fold_expectations_never_see_the_tus_own_package():
    rows = _rows()
    summaries = [r["summary"] for r in rows]
    packages = [r["package"] for r in rows]
    ratios = _ratios(rows)
    expected = forest.out_of_fold(summaries, packages, ratios, folds=3)
    # Rewrite one package's measurements: its own expectations do not move, others' do.
    changed = ratios.copy()
    mine = np.array([p == "pkg0" for p in packages])
    changed[mine] = np.log(0.5)
    again = forest.out_of_fold(summaries, packages, changed, folds=3)
    assert np.array_equal(expected[mine], again[mine])
    assert not np.array_equal(expected[~mine], again[~mine])
    # What the forest learnt from other packages follows the rule the data follows: each TU's
    # expectations come from its own summary.
    many_adds = np.array([s["opcodes"]["add"] > 150 for s in summaries])
    assert expected[many_adds, 0].mean() < expected[~many_adds, 0].mean()
    assert expected[~many_adds, 1].mean() < expected[many_adds, 1].mean()


def test_one_package_teaches_its_own_measurements():
    rows = _rows(packages=1)
    ratios = _ratios(rows)
    expected = forest.out_of_fold([r["summary"] for r in rows], [r["package"] for r in rows],
                                  ratios)
    assert np.array_equal(expected, ratios)


def test_the_forest_teacher_is_reproducible_and_keeps_refusals():
    rows = _rows()
    taught = forest_sizes(rows, REGISTRY, seed=0)
    assert taught == forest_sizes(rows, REGISTRY, seed=0)
    assert taught != forest_sizes(rows, REGISTRY, seed=1)
    assert set(taught) == {r["tu"] for r in rows}
    for row in rows:
        sizes = taught[row["tu"]]
        assert (sizes[2] is None) == ("2" not in row["broadcast"])
        # a forest expects no list to grow the object: log ratios are at most 0
        assert all(s is None or s <= row["baseline"] * (1 + 1e-9) for s in sizes)
    measured = examples_from_rows(rows, REGISTRY)
    distilled = examples_from_rows(rows, REGISTRY, taught_sizes=taught)
    assert [p for p, _ in measured] == [p for p, _ in distilled]
    assert [w for _, w in measured] != [w for _, w in distilled]
    for (_, weights), row in zip(distilled, rows, strict=True):
        assert sum(weights) == pytest.approx(1, abs=1e-5)
        if "2" not in row["broadcast"]:
            assert weights[2] == 0


def _shipped(tmp_path, rows: list[dict], trees: int = 20) -> tuple[Forest, object, list]:
    """A forest grown on `rows` as `llmcc-ctl train --forest` grows one, written to a file and
    read back as a compile reads it; also the scikit-learn forest and the feature names."""
    summaries = [r["summary"] for r in rows]
    names = forest.feature_names(summaries)
    grown_on = forest.feature_matrix(summaries, names)
    ratios = _ratios(rows)
    grown = forest.grow(grown_on, ratios, trees=trees)
    path = tmp_path / "forest.bin"
    path.write_bytes(forest.forest_file(forest.to_arrays(grown, grown_on, ratios), names,
                                        TEXTS, {"command": "test"}))
    return Forest.load(str(path)), grown, names


def test_the_shipped_forest_finds_the_neighbours_and_lists_the_grown_trees_find(tmp_path):
    rows = _rows()
    shipped, grown, names = _shipped(tmp_path, rows)
    grown_on = forest.feature_matrix([r["summary"] for r in rows], names)
    train_leaves = grown.apply(grown_on)
    ratios = np.clip(np.rint(_ratios(rows) * RATIO_SCALE), -32768, 0)  # as shipped
    rng = random.Random(7)
    for held in [_summary(rng) for _ in range(40)]:
        leaves = grown.apply(forest.feature_matrix([held], names))[0]
        together = train_leaves == leaves
        expected = (together / together.sum(axis=0)).sum(axis=1)
        weights = shipped.neighbours(inputs(held, shipped.index))  # as a compile computes
        assert sorted(weights) == np.flatnonzero(expected).tolist()
        assert [weights[tu] for tu in sorted(weights)] == pytest.approx(
            expected[expected > 0].tolist())
        # the greedy choice, by the numbers: each list the one that adds the most, until none
        # adds anything
        kept, chosen = np.zeros(len(rows)), []
        for _ in range(LISTS):
            totals = expected @ np.minimum(ratios - kept[:, None], 0)
            totals[chosen] = np.inf
            best = int(np.argmin(totals))
            if totals[best] >= 0:
                break
            chosen.append(best)
            kept = np.minimum(kept, ratios[:, best])
        assert shipped.choose(held, LISTS) == chosen
    many_adds = dict(_summary(random.Random(1)), opcodes={"add": 290, "select": 3})
    few_adds = dict(many_adds, opcodes={"add": 3, "select": 3})
    assert shipped.choose(many_adds, 1) == [0] and shipped.choose(few_adds, 1) == [1]


def test_a_list_expected_to_add_less_than_min_gain_ends_the_choice():
    three = [(1.0, {0: -500}),   # TU 0: list 0 saves 5%
             (1.0, {1: -20}),    # TU 1: list 1 saves 0.2%
             (1.0, {2: -10})]    # TU 2: list 2 saves 0.1%: over the three, 0.033%
    assert weighted_greedy(three, 3, 3) == [0, 1, 2]
    assert weighted_greedy(three, 3, 2) == [0, 1]
    assert weighted_greedy(three, 3, 3, min_gain=0.0005) == [0, 1]
    assert weighted_greedy(three, 3, 3, min_gain=0.05) == []
    assert weighted_greedy([(1.0, {0: -500, 1: -500})], 3, 3) == [0]  # beside 0, 1 adds nothing
    assert weighted_greedy([(1.0, {})], 3, 3) == []


@pytest.mark.parametrize("damage", ["missing", "truncated", "foreign", "trailing", "bad list"])
def test_a_broken_forest_file_is_refused_with_a_reason(tmp_path, damage):
    rows = _rows(packages=2)
    _shipped(tmp_path, rows, trees=3)
    path = tmp_path / "forest.bin"
    blob = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(blob[:len(blob) // 2])
    elif damage == "foreign":
        path.write_bytes(b"GGUF" + blob[4:])
    elif damage == "trailing":
        path.write_bytes(blob + b"\0")
    else:
        path.write_bytes(blob.replace(b"always-inline sroa<modify-cfg>", b"always-inline sroX<modify-cfg>"))
    with pytest.raises(AdvisorError, match=str(path)):
        Forest.load(str(path))

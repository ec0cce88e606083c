"""What `llmcc-ctl eval` and bench/min_gain.py score: the rows of a split, and the lists a
forest chooses as a compile chooses them."""

from __future__ import annotations

import math

import pytest
from test_forest import TEXTS, _ratios, _rows

from llmcc.advisor.forest import Forest
from llmcc.passes import parse
from llmcc.train import forest
from llmcc.train.evaluate import alike, difference, forest_ranker, group_table, split_rows
from llmcc.train.labels import sample_rank


def _row(tu: str, split: str, language: str = "c", **fields) -> dict:
    return {"tu": tu, "split": split, "language": language, "search": {}, "baseline": 100,
            "broadcast": {}, "summary": {}, **fields}


def test_split_rows_keeps_the_usable_rows_of_the_split_and_with_after_the_later_test_tus():
    tests = [_row(f"t{i}", "test") for i in range(6)]
    every = [*tests, _row("v", "validation"), _row("unsearched", "test", search=None)]
    del every[-1]["search"]
    assert [r["tu"] for r in split_rows(every, "validation")] == ["v"]
    assert [r["tu"] for r in split_rows(every, "test")] == [f"t{i}" for i in range(6)]
    ranked = sorted(tests, key=lambda r: sample_rank(r["language"], r["tu"]))
    assert {r["tu"] for r in split_rows(every, "test", after=4)} == \
        {r["tu"] for r in ranked[4:]}


def test_forest_ranker_chooses_what_the_forest_chooses_for_each_min_gain(tmp_path):
    rows = _rows(0)
    path = tmp_path / "forest.bin"
    path.write_bytes(forest.shipped([r["summary"] for r in rows], _ratios(rows), TEXTS,
                                    trees=20))
    grown = Forest.load(str(path))
    rank = forest_ranker(grown)
    for row in rows[:10]:
        for min_gain in (0.0, 0.001, 0.01):
            expected = [parse(TEXTS[i]) for i in grown.choose(row["summary"], 3, min_gain)]
            assert rank(row["summary"], 3, min_gain) == expected
    fewer = sum(len(rank(r["summary"], 3, 0.01)) for r in rows)
    assert fewer < sum(len(rank(r["summary"], 3, 0.0)) for r in rows)


def test_model_ranker_chooses_what_the_model_chooses_and_asks_it_once_a_tu():
    from llmcc.advisor.model import DEFAULT_MODEL
    from llmcc.advisor.model_runtime import ModelRuntime
    from llmcc.summary import to_prompt
    from llmcc.train import labelled
    from llmcc.train.evaluate import KS, MIN_GAINS, model_ranker

    distinct = {to_prompt(r["summary"]): r["summary"] for r in labelled.read_all()
                if r["split"] == "validation" and "summary" in r}
    summaries = list(distinct.values())[:20]
    with ModelRuntime(DEFAULT_MODEL) as runtime:
        asked = []
        top = runtime.top
        runtime.top = lambda text, n: asked.append(text) or top(text, n)
        rank = model_ranker(runtime)
        for summary in summaries:
            for k in KS:
                assert rank(summary, k, 0.0) == runtime.rank(to_prompt(summary), k)
            for min_gain in MIN_GAINS:
                assert rank(summary, 3, min_gain) == runtime.rank(to_prompt(summary), 3,
                                                                  min_gain)
        # the ranker's own questions: one a TU; runtime.rank asked once a call
        assert len(asked) == len(summaries) * (1 + len(KS) + len(MIN_GAINS))
        assert len(set(asked)) == len(summaries)


def test_a_package_behind_the_popular_lists_by_more_than_its_noise_is_marked_behind():
    # list 0 is popular's; the model chooses list 1. On "steady" list 1 keeps 1% where list 0
    # keeps 2%, on every TU: behind with no noise. On "noisy" it wins on two TUs and loses on two.
    held = [{"baseline": 100, "sizes": [98, 99]} for _ in range(4)]
    held += [{"baseline": 100, "sizes": sizes} for sizes in ([99, 96], [96, 99], [99, 94],
                                                             [95, 99])]
    twins = list(range(8))  # eight distinct TUs
    names = ["steady"] * 4 + ["noisy"] * 4
    orders = {3: [[1]] * 8}
    lead, band = difference(held[:4], orders[3][:4], [[0]] * 4, 3)
    assert round(lead, 3) == round(100 * (math.log(0.98) - math.log(0.99)), 3) and band == 0
    lead, band = difference(held[4:], orders[3][4:], [[0]] * 4, 3)
    assert lead > 0 and lead - band < 0 < lead + band  # ahead, but within its noise
    table = group_table(held, twins, orders, [0], names, "package")
    steady = next(line for line in table.splitlines() if line.startswith("| steady"))
    noisy = next(line for line in table.splitlines() if line.startswith("| noisy"))
    assert steady.endswith("| -1.02 (± 0.00) behind | 2.00% |") and "behind" not in noisy


def test_tus_alike_in_summary_and_every_size_are_one_sample_of_the_noise():
    # zlib's objects are built twice (static and shared), alike in summary and every measured
    # size: each counted twice, the mean is the same and the band as wide as counted once
    held = [{"baseline": 100, "sizes": sizes} for sizes in ([99, 96], [96, 99], [99, 94],
                                                            [95, 99], [97, 98])]
    summaries = [{"module": {"functions": i}} for i in range(5)]
    twins = [alike(row, summary) for row, summary in zip(held, summaries)]
    once = difference(held, [[1]] * 5, [[0]] * 5, 3, twins)
    twice = difference(held + held, [[1]] * 10, [[0]] * 10, 3, twins + twins)
    assert twice[0] == pytest.approx(once[0]) and twice[1] == pytest.approx(once[1])
    # the same sizes with other summaries (small TUs no list changes can share them): apart
    others = [alike(row, {"module": {"functions": 9 + i}}) for i, row in enumerate(held)]
    assert difference(held + held, [[1]] * 10, [[0]] * 10, 3, twins + others)[1] < \
        once[1] * 0.9
    # one TU, however often counted, has no band
    assert difference(held[:1] * 3, [[1]] * 3, [[0]] * 3, 3, twins[:1] * 3)[1] == math.inf
    # in the per-package table too
    table = group_table(held + held, twins + twins, {3: [[1]] * 10}, [0], ["zlib"] * 10,
                        "package")
    assert f"(± {once[1]:.2f})" in table

"""Choosing the popular lists: greedy by added geometric-mean saving, never above clang."""

from __future__ import annotations

import pytest

from llmcc.train import measure


def rows():
    # three TUs, baseline 100; list 0 helps TU a, list 1 helps b and c a little, list 2 breaks
    return [
        {"baseline": 100, "sizes": [80, 95, None], "package": "p"},
        {"baseline": 100, "sizes": [120, 95, None], "package": "p"},
        {"baseline": 100, "sizes": [100, 90, 50], "package": "q"},
    ]


def test_best_size_never_exceeds_the_baseline():
    assert measure.best_size(rows()[1], [0]) == 100
    assert measure.best_size(rows()[1], [0, 1]) == 95
    assert measure.best_size(rows()[0], [2]) == 100  # a rejected candidate counts for nothing


def test_geomean_saving_of_no_list_is_zero():
    assert measure.geomean_saving(rows(), []) == pytest.approx(0.0)


def test_greedy_picks_the_list_that_adds_most_then_stops_when_nothing_helps():
    chosen = measure.greedy(rows(), pool_size=3, count=5)
    assert chosen[0] == 2  # 50% on one TU beats 20% on one or ~7% on three
    assert set(chosen) == {0, 1, 2}
    gains = [measure.geomean_saving(rows(), chosen[:k]) for k in range(len(chosen) + 1)]
    assert gains == sorted(gains)


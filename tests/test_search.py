"""The autotuner: never worse than clang, minimised lists keep their size, runs are repeatable."""

from __future__ import annotations

import random
import subprocess
import time

import pytest
from conftest import frontend_ir

from llmcc import passes
from llmcc.optimize import Evaluator
from llmcc.search import minimise, mutate, tune
from llmcc.toolchain import check_tools

SOURCE = r"""
#include <string.h>
struct item { int key; char name[16]; };
static struct item table[32];
static inline __attribute__((always_inline)) int hash(int k) { return (k * 2654435761u) >> 27; }
int put(int key, const char *name) {
    for (int probe = 0; probe < 32; probe++) {
        struct item *it = &table[(hash(key) + probe) & 31];
        if (it->key == 0 || it->key == key) {
            it->key = key; strncpy(it->name, name, sizeof it->name - 1); return probe;
        }
    }
    return -1;
}
const char *get(int key) {
    for (int probe = 0; probe < 32; probe++) {
        struct item *it = &table[(hash(key) + probe) & 31];
        if (it->key == key) return it->name;
        if (it->key == 0) break;
    }
    return 0;
}
"""


@pytest.fixture
def evaluator(tmp_path, clang):
    source = tmp_path / "table.c"
    source.write_text(SOURCE)
    bitcode = tmp_path / "table.bc"
    frontend_ir(clang, source, bitcode)
    ev = Evaluator(("-Oz",), True, check_tools(clang, ""), str(bitcode), str(tmp_path), 30)
    ev.baseline()
    return ev


def test_mutation_keeps_lists_valid_and_always_inline_first():
    rng = random.Random(7)
    current = passes.random_list(rng)
    for _ in range(300):
        current = mutate(current, rng)
        assert passes.validate(current) == current
        assert current[0] == passes.REQUIRED_FIRST


def test_search_never_returns_more_than_the_baseline(evaluator):
    best, tried = tune(evaluator, [], budget=12, seconds=120, rng=random.Random(1))
    assert len(tried) == 12
    assert best.size <= evaluator.baseline_info.size
    assert best.passes is None or best.error is None
    assert tried[0].passes == passes.OZ_PIPELINE  # the search starts from clang's pipeline


def test_search_is_repeatable_for_a_seed(evaluator):
    first = [r.passes for r in tune(evaluator, [], 8, 120, random.Random(5), jobs=1)[1]]
    second = [r.passes for r in tune(evaluator, [], 8, 120, random.Random(5), jobs=1)[1]]
    assert first == second


def test_the_time_cap_counts_on_the_clock_it_is_given(evaluator):
    """Wall time passes while lists are measured; a clock that does not move (a machine busy
    with other work gives a CPU-time clock little) leaves the search to its budget."""
    walled = tune(evaluator, [], 6, 0.001, random.Random(2), jobs=1)
    assert len(walled[1]) == 2  # the first batch (two lists a job) outlasts 1 ms
    frozen = tune(evaluator, [], 6, 0.001, random.Random(2), jobs=1, clock=lambda: 0.0)
    assert len(frozen[1]) == 6


def test_the_label_runs_search_clock_is_the_cpu_its_tools_use(clang, tmp_path):
    """`llmcc.train.labels` caps each TU's search by it: waiting does not count, a compile does."""
    from llmcc.train.labels import cpu_seconds

    before = cpu_seconds()
    time.sleep(0.3)
    assert cpu_seconds() == before
    (tmp_path / "t.c").write_text(SOURCE)
    subprocess.run([clang, "-Oz", "-c", "t.c"], cwd=tmp_path, check=True)
    assert cpu_seconds() > before


# Passes that cannot help on SOURCE: it has no __builtin_expect, no floating point and no
# profile data. Spread through a list that does help, the minimiser must drop every one.
NO_HELP = ("lower-expect", "float2int", "loop-sink")


def test_minimise_drops_the_passes_that_do_not_help_and_stays_no_larger(evaluator):
    start = ("always-inline", "lower-expect", "sroa<modify-cfg>", "float2int", "jump-threading",
             "inline", "loop-sink")
    size = evaluator.candidate(start).size
    assert size is not None
    shorter = minimise(evaluator, start, size)
    assert not set(NO_HELP) & set(shorter), shorter
    assert shorter[0] == passes.REQUIRED_FIRST
    kept = iter(start)
    assert all(name in kept for name in shorter), "minimising only drops, it never reorders"
    assert evaluator.candidate(shorter).size <= size

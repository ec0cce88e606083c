"""A pass the differential test caught miscompiling, or one whose IR depends on the run
(llmcc.passes.NEVER_RUN), is never run, whoever proposes it: no search draws it, no advisor chooses a list with it, and the evaluator
every candidate goes through refuses it. Data files that name it still load.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil

import pytest

from llmcc.advisor import llm_compiler
from llmcc.advisor.forest import FOREST_FILE, Forest
from llmcc.advisor.model_runtime import list_token, lists_by_token
from llmcc.advisor.popular import PopularAdvisor
from llmcc.passes import NEVER_RUN, never_run, parse, random_list
from llmcc.reliability import differential as diff
from llmcc.search import mutate
from llmcc.train import labelled

CAUGHT = "always-inline default<Oz> newgvn"  # the list the differential run minimised to


def refused(passes) -> bool:
    return any(name in NEVER_RUN for name in passes)


def test_a_pass_caught_miscompiling_is_read_but_never_drawn():
    assert "newgvn" in NEVER_RUN
    passes = parse(CAUGHT)  # still in the vocabulary: data files naming it load
    assert never_run(passes).startswith("newgvn: ") and never_run(parse("gvn")) is None
    # LLVM 19's gvn-sink: the same list and TU gave different IR in different worker runs
    assert never_run(parse("always-inline default<Oz> gvn-sink")).startswith("gvn-sink: ")
    # LLVM 19's IROutliner: PCRE2's JIT failed its tests (tests/test_suites.py, pcre2)
    assert never_run(parse("always-inline default<Oz> iroutliner")).startswith("iroutliner: ")
    rng = random.Random(0)
    drawn = [random_list(rng) for _ in range(2000)]
    mutated = [mutate(passes, rng) for passes in drawn for _ in range(3)]
    assert not any(refused(p) for p in drawn + mutated)
    # what was the search's vocabulary still draws every other pass
    assert len({name for p in drawn for name in p}) > 50


def _validation_summaries(count: int = 300) -> list[dict]:
    return [r["summary"] for r in labelled.read_all()
            if r["split"] == "validation" and "summary" in r][:count]


def test_the_shipped_forest_never_chooses_a_list_that_must_never_run():
    """The shipped forest still names such lists (the broadcast set does) but never chooses
    them. It was grown (`llmcc-ctl train --forest` counts such lists refused) after newgvn,
    gvn-sink and iroutliner were caught, so holds no saving for any of their lists."""
    shipped = Forest.load(FOREST_FILE)
    assert shipped.never == {i for i, p in enumerate(shipped.lists) if refused(p)} != set()
    assert {name for i in shipped.never for name in shipped.lists[i]} >= set(NEVER_RUN)
    assert not set(shipped.saving_list) & shipped.never
    chosen = [shipped.choose(s, 10) for s in _validation_summaries()]
    assert not any(i in shipped.never for c in chosen for i in c)
    assert sum(map(len, chosen)) > 2000  # it still chooses, around them


def test_a_forest_that_learnt_from_such_lists_never_chooses_them(tmp_path):
    """A forest file grown before a pass was caught (here: grown on sizes that still credit
    newgvn) would choose its lists; Forest.never keeps them out of every choice."""
    from llmcc.train import forest as grow
    from llmcc.train.evaluate import usable
    from llmcc.train.headroom import as_pool_rows

    registry = labelled.read_lists()
    indices = registry["broadcast"]
    train = [r for r in usable(labelled.read_all()) if r["split"] == "train"][:1500]
    pool = as_pool_rows(train, indices, False)  # as grown before: newgvn credited
    ratios = grow.log_ratios([r["baseline"] for r in pool], [r["sizes"] for r in pool])
    path = tmp_path / "forest.bin"
    path.write_bytes(grow.shipped([r["summary"] for r in train], ratios,
                                  [registry["lists"][i] for i in indices], trees=5))
    old = Forest.load(str(path))
    assert old.never and set(old.saving_list) & old.never
    summaries = _validation_summaries()
    assert not any(i in old.never for s in summaries for i in old.choose(s, 10))
    old.never = frozenset()
    assert any(refused(old.lists[i]) for s in summaries for i in old.choose(s, 10))


def test_the_other_advisors_leave_such_lists_out(tmp_path):
    data = tmp_path / "popular.json"
    data.write_text(json.dumps({"lists": [{"passes": CAUGHT}, {"passes": "always-inline gvn"}]}))
    assert PopularAdvisor.load(str(data)).lists == (parse("gvn"),)
    # a model's answer tokens keep their numbers: the coverage table is indexed by them
    assert lists_by_token(json.dumps([CAUGHT, "always-inline gvn"])) == {
        list_token(1): parse("gvn")}
    # Meta's LLM Compiler answers in text: the pass is dropped as an unknown one would be
    assert llm_compiler.passes_of_answer("-p 'module(default<Oz>),function(newgvn,gvn)'") == \
        parse("default<Oz> gvn")
    assert llm_compiler.passes_of_answer("opt -p 'function(newgvn)'") is None


@pytest.mark.skipif(shutil.which(diff.CSMITH) is None or not os.path.isdir(diff.CSMITH_INCLUDE),
                    reason="csmith and libcsmith-dev are not installed")
def test_the_miscompile_the_differential_run_caught_is_refused_not_built(tmp_path):
    """Program 144 of seed 5 printed its checksum in 2 ms at -O0 and looped forever built with
    CAUGHT; the evaluator every compile goes through now refuses the list before opt runs."""
    tools = diff.find_tools()
    options = diff.Options(seed=5, lists=2, run_timeout=5.0)
    record = diff.check_program(144, str(tmp_path), options, tools,
                                (parse(CAUGHT), parse("always-inline default<Oz> gvn")))
    assert record["status"] == diff.TESTED, record
    caught, honest = record["lists"]
    assert caught["outcome"] == diff.REJECTED and caught["error"].startswith("never run: newgvn")
    assert honest["outcome"] == diff.MATCH, record
    assert not os.path.exists(tmp_path / diff.REPRODUCERS)


def test_evaluation_counts_such_a_list_as_refused():
    """`llmcc-ctl eval`: no advisor, fixed list or oracle is credited with what no compile can
    get."""
    from llmcc.train.evaluate import runnable
    from llmcc.train.measure import geomean_saving, greedy

    pool = [{"baseline": 100, "sizes": [99, 80], "search": 80}]
    kept = runnable(pool, ["always-inline gvn", CAUGHT])
    assert kept[0]["sizes"] == [99, None] and pool[0]["sizes"] == [99, 80]
    assert greedy(kept, 2, 2) == [0] and round(geomean_saving(kept, [0, 1]), 6) == 1.0


def test_training_the_model_teaches_no_such_list():
    """`llmcc-ctl train`: a TU where such a list was smallest teaches the best list llmcc may
    run, and the coverage table credits such a list with nothing."""
    from llmcc.advisor.model_runtime import COVERAGE_SCALE
    from llmcc.train.fit import coverage_table, examples_from_rows

    registry = {"lists": [CAUGHT, "always-inline gvn"], "broadcast": [0, 1]}
    row = {"tu": "t", "split": "train", "summary": _validation_summaries(1)[0], "baseline": 100,
           "broadcast": {"0": 80, "1": 99}}
    [(_, weights)] = examples_from_rows([row], registry)
    assert weights == (0.0, 1.0, 0.0)  # CAUGHT, gvn, NONE
    saved = round(COVERAGE_SCALE * math.log(100 / 99))  # gvn's saving on the TU teaching gvn
    assert coverage_table([row], registry) == [[0, 0], [0, saved]]

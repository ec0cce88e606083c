"""Differential testing of pass lists on csmith programs (llmcc.reliability.differential).

A quick sample must show no miscompile, and a deliberately wrong candidate must be caught,
kept as a reproducer and minimised: otherwise a clean sample would prove nothing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter

import pytest

from llmcc.optimize import Evaluator
from llmcc.passes import to_text
from llmcc.reliability import differential as diff

pytestmark = pytest.mark.skipif(shutil.which(diff.CSMITH) is None
                                or not os.path.isdir(diff.CSMITH_INCLUDE),
                                reason="csmith and libcsmith-dev are not installed")

FAILURE_KEYS = ("mismatches", "crashes", "timeouts", "link_errors")
# The CI sample: 50 programs, each with 16 lists chosen as `--lists 16` chooses them (the
# advisor's popular lists first, then random lists and mutations): 70 s on 2 idle cores,
# just over 2 minutes on 2 cores shared with other jobs.
CI_PROGRAMS = 50
CI_LISTS = 16
QUICK = diff.Options(seed=1, lists=CI_LISTS, run_timeout=2.0)
TRIGGER = "gvn"
SEEDED = (("always-inline", "sroa<modify-cfg>", "early-cse", "instcombine<no-verify-fixpoint>",
           "gvn", "simplifycfg", "sccp"),)


class MiscompilingEvaluator(Evaluator):
    """An Evaluator under which `gvn` 'miscompiles': a list containing it is applied to IR whose
    CRC starts from another value, so the program prints another checksum. The symbols stay
    the same, so the object passes the wrapper's checks like a real miscompile would."""

    def candidate(self, passes):
        if TRIGGER not in passes:
            return super().candidate(passes)
        honest, self.bitcode = self.bitcode, self._tampered()
        try:
            return super().candidate(passes)
        finally:
            self.bitcode = honest

    def _tampered(self) -> str:
        path = self.bitcode + ".tampered.bc"
        if not os.path.exists(path):
            llvm = os.path.dirname(self.tools.opt)
            text = subprocess.run([os.path.join(llvm, "llvm-dis"), self.bitcode, "-o", "-"],
                                  capture_output=True, text=True, check=True).stdout
            wrong = text.replace("@crc32_context = internal global i32 -1",
                                 "@crc32_context = internal global i32 0")
            assert wrong != text, "csmith's CRC state not found in the IR"
            subprocess.run([os.path.join(llvm, "llvm-as"), "-o", path], input=wrong, text=True,
                           check=True)
        return path


class MiscompilingClang(MiscompilingEvaluator):
    """As if clang's own pipeline miscompiled: the baseline is built from the wrong IR."""

    def baseline(self):
        honest, self.bitcode = self.bitcode, self._tampered()
        try:
            return super().baseline()
        finally:
            self.bitcode = honest


def test_generated_programs_survive_every_list(tmp_path):
    out = str(tmp_path / "run")
    started = time.monotonic()
    figures = diff.run_campaign(out, CI_PROGRAMS, QUICK, jobs=2)
    records = diff.read_records(out)
    report = diff.report(records)
    assert figures["programs"] == CI_PROGRAMS
    # at least half the programs are tested (a skip is a -O0 reference past 2 s), each with
    # all 16 lists, random lists and mutations among them
    tested = [r for r in records if r["status"] == diff.TESTED]
    assert len(tested) == figures["tested"] >= CI_PROGRAMS // 2, report
    assert all(len(r["lists"]) == CI_LISTS for r in tested), report
    drawn = {diff.POPULAR, diff.RANDOM, diff.MUTATED}
    assert all({e["origin"] for e in r["lists"]} == drawn for r in tested), report
    assert figures["lists_tried"] == CI_LISTS * len(tested), report
    # lists of every origin were built, run and compared, not only rejected
    ran = Counter(e["origin"] for r in tested for e in r["lists"] if e["outcome"] == diff.MATCH)
    assert all(ran[origin] > 0 for origin in drawn), (ran, report)
    assert figures["passed"] == sum(ran.values()) and figures["objects_run"] > 0, report
    assert all(figures[key] == 0 for key in FAILURE_KEYS), report
    assert not os.path.exists(os.path.join(out, diff.REPRODUCERS))
    first = time.monotonic() - started

    # resumable: a second run finds every program done and tests nothing again
    lines = (tmp_path / "run" / diff.RESULTS).read_text().count("\n")
    started = time.monotonic()
    assert diff.run_campaign(out, CI_PROGRAMS, QUICK, jobs=2) == figures
    assert (tmp_path / "run" / diff.RESULTS).read_text().count("\n") == lines
    assert time.monotonic() - started < first / 2


def test_a_run_with_other_settings_does_not_resume(tmp_path):
    out = str(tmp_path / "run")
    diff.run_campaign(out, 0, QUICK)
    with pytest.raises(diff.CampaignError, match="seed"):
        diff.run_campaign(out, 0, diff.Options(seed=QUICK.seed + 1, lists=QUICK.lists))


def test_a_miscompile_is_caught_kept_and_minimised(tmp_path):
    out = str(tmp_path / "run")
    figures = diff.run_campaign(out, 1, diff.Options(seed=3, lists=2, run_timeout=2.0),
                                advised=SEEDED, evaluator_class=MiscompilingEvaluator)
    records = diff.read_records(out)
    assert records[0]["status"] == diff.TESTED, records
    assert records[0]["baseline"]["outcome"] == diff.MATCH  # the baseline is never tampered
    caught = [e for e in records[0]["lists"] if e["outcome"] == diff.MISMATCH]
    assert figures["mismatches"] == len(caught) >= 1, diff.report(records)
    assert all(TRIGGER in e["passes"].split() for e in caught)
    entry = caught[0]
    assert entry["minimal"] == f"always-inline {TRIGGER}"

    kept = os.path.join(out, diff.REPRODUCERS, entry["reproducer"])
    for name in ("program.c", "program.bc", "passes.txt", "minimal.txt", "commands.sh",
                 "minimal.sh", "reference.out", "candidate.out", "outcome.json"):
        assert os.path.isfile(os.path.join(kept, name)), name
    with open(os.path.join(kept, "outcome.json")) as handle:
        facts = json.load(handle)
    assert facts["outcome"] == diff.MISMATCH and facts["passes"] == entry["passes"]
    with open(os.path.join(kept, "reference.out"), "rb") as ref, \
            open(os.path.join(kept, "candidate.out"), "rb") as got:
        assert ref.read() != got.read()
    # the kept commands are the real ones: rebuilt without the injected fault, they agree
    rerun = subprocess.run(["sh", os.path.join(kept, "minimal.sh")], capture_output=True,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert diff.report(records).count(entry["reproducer"]) == 1


def test_a_baseline_that_disagrees_is_not_blamed_on_the_lists(tmp_path):
    out = str(tmp_path / "run")
    figures = diff.run_campaign(out, 1, diff.Options(seed=3, lists=2, run_timeout=2.0),
                                advised=SEEDED, evaluator_class=MiscompilingClang)
    assert figures["baseline_differs"] == 1 and figures["lists_tried"] == 0
    kept = os.path.join(out, diff.BASELINE_DIFFERS_DIR, "s3-p00000")
    assert os.path.isfile(os.path.join(kept, "commands.sh"))
    assert not os.path.exists(os.path.join(out, diff.REPRODUCERS))


def test_minimisation_keeps_only_the_passes_the_failure_needs():
    def fails(passes):
        return "gvn" in passes and "sccp" in passes

    start = ("always-inline", "sroa<modify-cfg>", "gvn", "dce", "sccp", "gvn", "adce")
    assert diff.minimise_failure(start, fails) == ("always-inline", "gvn", "sccp")


def test_lists_are_seeded_distinct_and_the_advisors_first():
    lists = diff.candidate_lists(SEEDED, 8, random.Random(5))
    assert lists == diff.candidate_lists(SEEDED, 8, random.Random(5))
    assert lists[0] == (diff.POPULAR, SEEDED[0])
    assert len({passes for _, passes in lists}) == 8
    assert {origin for origin, _ in lists[1:]} == {diff.RANDOM, diff.MUTATED}


def _three_lists_on_two_programs(out: str, advisor: str, identity: str) -> list[dict]:
    """The records of the programs a 2-program, 3-list run of `advisor` tested: each with the
    advisor's identity and none failing."""
    options = diff.Options(seed=1, lists=3, run_timeout=2.0, advisor=advisor)
    figures = diff.run_campaign(out, 2, options)
    records = diff.read_records(out)
    tested = [r for r in records if r["status"] == diff.TESTED]
    assert tested and all(r["advised"] == identity for r in records), records
    assert all(figures[key] == 0 for key in FAILURE_KEYS), diff.report(records)
    assert f"| {advisor} | " in diff.report(records)
    return tested


def test_the_forest_advisor_s_whole_repertoire_can_be_tested(tmp_path):
    """`--advisor forest`: every list the default advisor may choose, in the forest's order,
    built and run against the reference; a directory of one advisor's run refuses the other."""
    from llmcc.advisor.forest import FOREST_FILE, Forest
    from llmcc.advisor.forest import identity as forest_identity
    from llmcc.config import load

    forest = Forest.load(FOREST_FILE)
    advised, identity = diff.load_advised(diff.FOREST)
    assert advised == tuple(forest.lists) and len(advised) > 50
    # the identity every cache key of the default advisor holds
    assert identity == forest_identity(load({"LLMCC_CONFIG": os.devnull}))

    out = str(tmp_path / "run")
    for record in _three_lists_on_two_programs(out, diff.FOREST, identity):
        assert [(e["origin"], e["passes"]) for e in record["lists"]] == \
            [(diff.FOREST, text) for text in forest.texts[:3]]
    with pytest.raises(diff.CampaignError, match="advisor"):
        diff.run_campaign(out, 0, diff.Options(seed=1, lists=3, run_timeout=2.0))


def test_the_lists_a_search_keeps_can_be_tested(tmp_path, monkeypatch):
    """`--advisor search`: the search advisor runs on each program as a compile runs it (its
    budget from the settings) and a list for each of the smallest objects it built, its answer
    first, is built and run against the reference."""
    from llmcc.advisor.popular import PopularAdvisor
    from llmcc.advisor.search import SearchAdvisor
    from llmcc.advisor.search import identity as search_identity
    from llmcc.config import load
    from llmcc.optimize import choose

    monkeypatch.setenv("LLMCC_CONFIG", os.devnull)
    monkeypatch.setenv("LLMCC_SEARCH_BUDGET", "16")
    seeds, identity = diff.load_advised(diff.SEARCH)
    assert identity == search_identity(load(), diff.load_advised(diff.POPULAR)[1])
    assert identity.startswith("search:16:")

    tested = _three_lists_on_two_programs(str(tmp_path / "run"), diff.SEARCH, identity)
    for record in tested:
        entries = record["lists"]
        assert len(entries) == 3 and {e["origin"] for e in entries} == {diff.SEARCH}
        assert record["objects_run"] == 3  # three objects, not three lists building one
        sizes = [e["size"] for e in entries]
        assert sizes == sorted(sizes) and all(e["outcome"] == diff.MATCH for e in entries)
    # the first list is the answer a compile with LLMCC_ADVISOR=search keeps
    program = tested[0]["program"]
    with tempfile.TemporaryDirectory() as workdir:
        source = os.path.join(workdir, "program.c")
        diff.generate(diff.csmith_seed(1, program), diff.Options(), source)
        tools = diff.find_tools()
        inv = diff.optimised_compile(source, "z")
        bitcode = os.path.join(workdir, "program.bc")
        subprocess.run([tools.clang, *inv.frontend_args(bitcode)], check=True)
        evaluator = Evaluator(inv.codegen, inv.pic, tools, bitcode, workdir, 30.0, False)
        baseline = evaluator.baseline()
        found = diff.searched_lists(evaluator, seeds, 3, f"1:{program}")
        assert [to_text(p) for _, p in found] == [e["passes"] for e in tested[0]["lists"]]
        answer = choose(baseline, SearchAdvisor(load(), PopularAdvisor(seeds, "")).tune(
            evaluator, f"1:{program}"))
        assert answer.passes in (None, found[0][1])

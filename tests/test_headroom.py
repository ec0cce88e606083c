"""The committed dataset's format and the headroom tables read from it alone."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from llmcc.train import headroom, labelled


def _row(tu, split, baseline, search, former, broadcast, new_only=(), language="c"):
    return {"tu": tu, "package": f"pkg-{split}", "split": split, "language": language,
            "ir_tokens": 100, "baseline": baseline,
            "search": {"passes": "always-inline gvn", "size": search, "size_former": former,
                       "evaluated": 120, "seconds": 1.0, "capped": False},
            "broadcast": {str(i): size for i, size in enumerate(broadcast)},
            **({"new_rule_only": list(new_only)} if new_only else {})}


@pytest.fixture
def sample(tmp_path):
    rows = {
        "train": [_row("a", "train", 100, 90, 95, [90, 99]), _row("b", "train", 100, 95, 95,
                                                                    [97, 95])],
        "test": [_row("c", "test", 200, 180, 190, [180, 190], new_only=[0]),
                 _row("d", "test", 100, 100, 100, [None, 101], language="c++")],
    }
    for split, members in rows.items():
        labelled.write_package(str(tmp_path), f"pkg-{split}", {r["tu"]: r for r in members})
    registry = {"lists": ["always-inline default<Oz>", "always-inline gvn"], "broadcast": [0, 1]}
    labelled.write_lists(str(tmp_path), registry)
    return tmp_path


def test_rows_and_lists_round_trip_through_the_compressed_files(sample):
    rows = labelled.read_all(str(sample))
    assert [r["tu"] for r in rows] == ["c", "d", "a", "b"]  # by package, then TU
    assert labelled.read_lists(str(sample))["broadcast"] == [0, 1]
    registry = labelled.read_lists(str(sample))
    assert labelled.register(registry, ["always-inline gvn", "always-inline sccp"]) == [1, 2]


def test_headroom_uses_train_to_choose_and_the_former_rule_drops_new_only_lists(sample):
    rows, indices = headroom.labelled_rows(str(sample))
    train = headroom.as_pool_rows([r for r in rows if r["split"] == "train"], indices, False)
    chosen = headroom.choose(train, len(indices))
    current = headroom.figures(chosen, headroom.as_pool_rows(
        [r for r in rows if r["split"] == "test"], indices, False), len(indices))
    former = headroom.figures(chosen, headroom.as_pool_rows(
        [r for r in rows if r["split"] == "test"], indices, True), len(indices))
    # train prefers list 0 (saves 10% and 3%); on test it gives c 180/200 and d stays 100
    expected = 100 * (1 - math.sqrt(0.9 * 1.0))
    assert current["popular top-1"] == pytest.approx(expected)
    # the former rule refused list 0 on c: top-1 saves nothing, top-3 falls back on list 1
    assert former["popular top-1"] == 0.0
    assert former["popular top-3"] == pytest.approx(100 * (1 - math.sqrt(0.95)))
    assert current["per-TU search"] == pytest.approx(expected)
    assert former["per-TU search"] == pytest.approx(100 * (1 - math.sqrt(0.95)))


def test_headroom_command_prints_every_table(sample):
    done = subprocess.run([sys.executable, "-m", "llmcc.train.headroom", "--dir", str(sample)],
                          capture_output=True, text=True, check=True)
    for heading in ("| split | packages |", "| on the test split (2 TUs) |", "| language |",
                    "| package |"):
        assert heading in done.stdout


def test_the_rule_table_per_language_counts_only_that_languages_tus(sample):
    rows, indices = headroom.labelled_rows(str(sample))
    c_table = headroom.headroom_table(rows, indices, "test", "c").splitlines()
    cxx_table = headroom.headroom_table(rows, indices, "test", "c++").splitlines()
    assert c_table[0].startswith("| on the test split, c (1 TUs) |")
    # c alone: list 0 (chosen on train) saves 10% under the current rule, is refused before
    assert "| popular top-1 | 10.00% | 0.00% |" in c_table
    assert cxx_table[0].startswith("| on the test split, c++ (1 TUs) |")
    assert "| popular top-1 | 0.00% | 0.00% |" in cxx_table


def test_a_tu_searched_but_not_yet_broadcast_is_counted_labelled_but_left_out_of_the_headroom(
        sample):
    rows = labelled.read_all(str(sample))
    waiting = {**_row("e", "test", 100, 90, 90, []), "package": "pkg-test"}
    del waiting["broadcast"]  # the labelling run searched it and has not broadcast yet
    labelled.write_package(str(sample), "pkg-test",
                           {r["tu"]: r for r in [*rows, waiting] if r["split"] == "test"})
    done = subprocess.run([sys.executable, "-m", "llmcc.train.headroom", "--dir", str(sample)],
                          capture_output=True, text=True, check=True)
    assert "| test | 0 | 0 (0 / 0) | 0.0 M | 3 (2 / 1) |" in done.stdout
    assert "| on the test split (2 TUs) |" in done.stdout


def test_the_dataset_is_found_beside_the_package_or_else_in_the_working_directory(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "data" / "dataset").mkdir(parents=True)
    (checkout / "llmcc" / "train").mkdir(parents=True)
    beside = str(checkout / "llmcc" / "train" / "labelled.py")
    assert labelled.dataset_dir(beside, "/elsewhere") == str(checkout / "data" / "dataset")
    installed = str(tmp_path / "venv" / "site-packages" / "llmcc" / "train" / "labelled.py")
    assert labelled.dataset_dir(installed, str(checkout)) == str(checkout / "data" / "dataset")


def test_the_committed_dataset_loads_and_its_tables_print():
    rows = labelled.read_all()
    if not rows:
        pytest.skip(f"no labelled TUs committed yet in {labelled.DATASET_DIR}")
    assert all({"tu", "package", "split", "baseline"} <= row.keys() for row in rows)
    assert all(row["search"]["size"] <= row["baseline"] for row in rows if "search" in row)
    done = subprocess.run([sys.executable, "-m", "llmcc.train.headroom"], capture_output=True,
                          text=True, check=True)
    assert "| on the test split" in done.stdout


def test_evaluate_scores_each_tus_own_answers_against_fixed_lists(tmp_path):
    from llmcc.summary import to_prompt
    from llmcc.train import evaluate
    from llmcc.train.labels import sample_rank

    real = next(r["summary"] for r in labelled.read_all() if "summary" in r)
    lists = ["always-inline default<Oz>", "always-inline gvn", "always-inline dce"]
    sizes = {"a": [90, 99, 99], "b": [95, 99, 99], "c": [100, 80, 99], "d": [100, 99, 90]}
    rows = {}
    for n, (tu, broadcast) in enumerate(sizes.items()):
        buckets = {key: n for key in real["size_buckets"]}  # prompts that differ
        summary = {**real, "size_buckets": buckets}
        rows[tu] = {**_row(tu, "train" if tu in "ab" else "test", 100, min(broadcast),
                           min(broadcast), broadcast), "summary": summary}
    for split in ("train", "test"):
        labelled.write_package(str(tmp_path), split,
                               {tu: r for tu, r in rows.items() if r["split"] == split})
    labelled.write_lists(str(tmp_path), {"lists": lists, "broadcast": [0, 1, 2]})
    from llmcc.passes import parse

    best = {to_prompt(r["summary"]): parse(lists[r["broadcast"].index(min(r["broadcast"]))])
            for r in ({**r, "broadcast": list(r["broadcast"].values())} for r in rows.values())}
    # the stand-in model answers each TU's best list, or nothing when asked for a gain of 1%
    oracle = evaluate.evaluate(
        str(tmp_path), "test",
        lambda summary, k, gain: [best[to_prompt(summary)]][:k] if gain < 0.01 else [])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in oracle.splitlines()}
    # popular (chosen on train) is list 0, which saves nothing on c and d; the model's own
    # first answer is each TU's best: 20% and 10%, geomean 1 - sqrt(0.8 * 0.9)
    assert "| 0.00% | 0/2 |" in lines["popular top-1"]
    expected = 100 * (1 - math.sqrt(0.8 * 0.9))
    assert f"| {expected:.2f}% | 2/2 |" in lines["model top-1"]
    assert f"| {expected:.2f}% | 2/2 |" in lines["best of the 3 broadcast lists per TU (oracle)"]
    assert "| 100% |" in lines["model top-3: share of the broadcast oracle"]
    for gain in ("0.0%", "0.1%", "0.3%"):
        assert lines[gain] == f"| {gain} | {expected:.2f}% | 2/2 | 1.00 |"
    assert lines["1.0%"] == "| 1.0% | 0.00% | 0/2 | 0.00 |"
    # --after 1: only the test TU the seeded sample ranks second, whose best is 20% or 10%
    later = max("cd", key=lambda tu: sample_rank("c", tu))
    fresh = evaluate.evaluate(str(tmp_path), "test",
                              lambda summary, k, gain: [best[to_prompt(summary)]][:k], after=1)
    assert "| on the test split (1 TUs) |" in fresh
    assert f"| {20 if later == 'c' else 10:.2f}% | 1/1 |" in fresh
    unknown = evaluate.evaluate(str(tmp_path), "test",
                                lambda summary, k, gain: [parse("always-inline tailcallelim")][:k])
    lines = {line.split(" | ")[0].lstrip("| "): line for line in unknown.splitlines()}
    assert "| 0.00% | 0/2 |" in lines["model top-1"]
    assert "| 2 |" in lines["model answers (top-3) without a measured size"]

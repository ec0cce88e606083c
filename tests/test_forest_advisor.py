"""The forest advisor end to end: `llmcc` with LLMCC_ADVISOR=forest compiles through the real
clang and opt with the lists a forest file chooses for the TU's summary, keys every decision on
the file's content, and a broken file ends the compile as plain clang's would, with one warning.
Also the forest llmcc ships: it loads, and chooses among the dataset's broadcast lists.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from conftest import log_events, log_outcomes, run_ok
from test_faults import ARGS, _assert_like_plain, _build, _ours, tree  # noqa: F401
from test_forest import TEXTS, _ratios, _rows
from test_model import summaries  # noqa: F401 - fixtures used here
from test_model_advisor import plain  # noqa: F401

from llmcc import events
from llmcc.advisor.forest import FOREST_FILE, Forest
from llmcc.summary import SUMMARY_VERSION
from llmcc.train import forest, labelled

K = 3
MIN_GAIN = 0.001  # LLMCC_MIN_GAIN's default, 0.1%, as the forest reads it (a log ratio)


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def grown(path: Path, seed: int = 0) -> Path:
    rows = _rows(seed)
    path.write_bytes(forest.shipped([r["summary"] for r in rows], _ratios(rows), TEXTS,
                                    seed=seed, trees=20))
    return path


def with_forest(env: dict[str, str], path: Path) -> dict[str, str]:
    return {**env, "LLMCC_ADVISOR": "forest", "LLMCC_FOREST": str(path),
            "LLMCC_CANDIDATES": str(K)}


def test_the_forest_advisor_tries_the_lists_its_file_chooses_and_keys_on_the_file(
        tree, env, llmcc, llmcc_ctl, plain, summaries, tmp_path):  # noqa: F811
    path = grown(tmp_path / "forest.bin")
    env = with_forest(env, path)
    expected = [TEXTS[i] for i in Forest.load(str(path)).choose(summaries[0], K, MIN_GAIN)]
    assert expected  # the test forest expects some list to shrink size.c
    tuned = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, tuned, tree, None)
    [event] = log_events(env)
    assert event["outcome"] == events.MISS and "advisor_failure" not in event
    assert event["advisor"] == "forest:" + digest(path)
    assert event["evaluated"] == len(expected)
    assert {tried["passes"] for tried in event["tried"][1:]} == set(expected)
    assert event["size"] <= event["baseline_size"]
    first = digest(path)
    assert f"advisor=forest:{first}" in run_ok([llmcc_ctl, "id"], None, env).decode().split()
    _build(llmcc, ARGS, tree, env)
    grown(path, seed=1)  # another forest in the same file: every key changes
    assert f"advisor=forest:{digest(path)}" in run_ok([llmcc_ctl, "id"], None,
                                                      env).decode().split()
    assert digest(path) != first
    _build(llmcc, ARGS, tree, env)
    assert log_outcomes(env) == [events.MISS, events.DIRECT_HIT, events.MISS]


def test_min_gain_leaves_out_the_lists_expected_to_save_less_and_is_part_of_every_key(
        tree, env, llmcc, llmcc_ctl, plain, summaries, tmp_path):  # noqa: F811
    path = grown(tmp_path / "forest.bin")
    everything = Forest.load(str(path)).choose(summaries[0], K, 0.0)
    assert everything
    env = {**with_forest(env, path), "LLMCC_MIN_GAIN": "99"}  # no list saves that much
    _assert_like_plain(plain, _build(llmcc, ARGS, tree, env), tree, None)
    assert " min_gain=99 " in run_ok([llmcc_ctl, "id"], None, env).decode()
    env["LLMCC_MIN_GAIN"] = "0"
    _build(llmcc, ARGS, tree, env)
    assert " min_gain=0 " in run_ok([llmcc_ctl, "id"], None, env).decode()
    nothing, every = log_events(env)
    assert nothing["outcome"] == every["outcome"] == events.MISS  # a new key, not a hit
    assert nothing["evaluated"] == 0 and nothing["size"] == nothing["baseline_size"]
    assert every["evaluated"] == len(everything)


@pytest.mark.parametrize("kind, warning", [
    ("missing", "No such file or directory"),
    ("truncated", "is corrupt: truncated"),
    ("foreign", "not an llmcc forest file"),
    ("old-summary", "summary version"),
    ("no-tree", "leads back to node"),
])
def test_a_bad_forest_file_warns_once_and_compiles_as_plain_clang(
        tree, env, llmcc, plain, tmp_path, monkeypatch, kind, warning):  # noqa: F811
    path = tmp_path / "forest.bin"
    if kind == "truncated":
        path.write_bytes(grown(path).read_bytes()[:-100])
    elif kind == "foreign":
        path.write_bytes(b"GGUF" + bytes(100))
    elif kind == "old-summary":
        monkeypatch.setattr(forest, "SUMMARY_VERSION", SUMMARY_VERSION + 1)
        grown(path)
    elif kind == "no-tree":  # every array of the right length, every split leading to the root
        rows = _rows()
        real = forest.to_arrays

        def damaged(*args) -> dict:
            arrays = real(*args)
            nodes = len(arrays["right"])
            return {**arrays, "right": [0] * nodes, "threshold": [-1e30] * nodes}

        monkeypatch.setattr(forest, "to_arrays", damaged)
        path.write_bytes(forest.shipped([r["summary"] for r in rows], _ratios(rows), TEXTS,
                                        trees=3))
    env = with_forest(env, path)
    for _ in range(2):
        tuned = _build(llmcc, ARGS, tree, env)
        _assert_like_plain(plain, tuned, tree, warning)
        assert str(path) in _ours(tuned[1])[0]
    if kind in ("old-summary", "no-tree"):  # the popular lists instead, and nothing cached
        assert "did not cache this TU's decision" in _ours(tuned[1])[0]
        assert log_outcomes(env) == [events.MISS, events.MISS]
    else:  # the forest cannot even be read: plain clang compiles it
        assert tuned[2] == plain[2]
        assert log_outcomes(env) == [events.FALLBACK, events.FALLBACK]


def test_the_shipped_forest_chooses_among_the_datasets_broadcast_lists():
    shipped = Forest.load(FOREST_FILE)
    registry = labelled.read_lists()
    assert shipped.texts == [registry["lists"][i] for i in registry["broadcast"]]
    assert shipped.header["summary_version"] == SUMMARY_VERSION
    [row] = [r for r in labelled.read_all() if r["split"] == "validation"][:1]
    chosen = shipped.choose(row["summary"], K)
    assert len(chosen) <= K and len(set(chosen)) == len(chosen)
    assert all(0 <= i < len(shipped.texts) for i in chosen)



@pytest.mark.parametrize("forest_answers", [True, False], ids=["forest", "old-summary-forest"])
def test_a_damaged_popular_file_concerns_only_a_tu_the_forest_cannot_answer(
        tree, env, llmcc, plain, summaries, package_copy, tmp_path, monkeypatch,  # noqa: F811
        forest_answers):
    """The popular lists are the forest's fall-back, read when it falls back, not before."""
    if not forest_answers:
        monkeypatch.setattr(forest, "SUMMARY_VERSION", SUMMARY_VERSION + 1)
    path = grown(tmp_path / "forest.bin")
    popular = package_copy / "advisor" / "popular.json"
    popular.write_bytes(b"\x00not json")
    env = with_forest(env, path)
    tuned = _build(llmcc, ARGS, tree, env)
    [event] = log_events(env)
    if forest_answers:  # as if nothing were damaged: its lists tried, the decision cached
        _assert_like_plain(plain, tuned, tree, None)
        assert event["outcome"] == events.MISS and "advisor_failure" not in event
        assert event["evaluated"] == len(Forest.load(str(path)).choose(summaries[0], K,
                                                                        MIN_GAIN))
        _build(llmcc, ARGS, tree, env)
        assert log_outcomes(env) == [events.MISS, events.DIRECT_HIT]
    else:  # nothing to try: plain clang's object, one warning naming both files, not cached
        _assert_like_plain(plain, tuned, tree, "summary version")
        assert tuned[2] == plain[2]
        assert str(popular) in _ours(tuned[1])[0] and "is corrupt" in _ours(tuned[1])[0]
        assert "did not cache this TU's decision" in _ours(tuned[1])[0]
        assert event["outcome"] == events.MISS and event["evaluated"] == 0

"""A user's own model, as the README says to make one: record TUs with LLMCC_RECORD, label them
(`llmcc-ctl label`), train on them (`llmcc-ctl train --add`), evaluate (`llmcc-ctl eval DIR`)
and compile with it (LLMCC_MODEL)."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("torch", reason="needs the train extra (pip install -e '.[train]')")

from conftest import SIZE_H, log_events, run, run_ok
from test_model import SOURCES

from llmcc.advisor.model_runtime import KEY_COMMAND, gguf_strings
from llmcc.train import labelled

LISTS = ["always-inline default<Oz>", "always-inline mem2reg sroa<modify-cfg> gvn",
         "always-inline sroa<modify-cfg> instcombine<no-verify-fixpoint> simplifycfg"]
TINY = ["--vocab-size", "400", "--context", "1024", "--dim", "32", "--layers", "1", "--heads",
        "2", "--kv-heads", "1", "--hidden", "64", "--steps", "20", "--batch-size", "2",
        "--threads", "1"]


def record_and_label(tmp_path, env, llmcc, llmcc_ctl):
    """SOURCES compiled with LLMCC_RECORD and labelled as the README says, against a dataset of
    three broadcast lists: (source dir, records dir, dataset dir, the labelled rows)."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "size.h").write_text(SIZE_H)
    records = tmp_path / "records"
    for name, text in SOURCES.items():
        (source / name).write_text(text)
        run_ok([llmcc, "-Oz", "-c", name], source, {**env, "LLMCC_RECORD": str(records)})
    dataset = tmp_path / "dataset"
    labelled.write_lists(str(dataset), {"lists": LISTS, "broadcast": [0, 1, 2]})

    label = [llmcc_ctl, "label", str(records), "--budget", "4", "--jobs", "1", "--dataset",
             str(dataset)]
    out = run_ok(label, tmp_path, env).decode().strip()
    rows = labelled.read_package(str(records / "labels"), "records")
    assert out == str(records / "labels" / "records.jsonl.xz") and len(rows) == len(SOURCES)
    for row in rows.values():
        assert row["split"] == "train" and row["summary"]["version"] >= 1
        assert sorted(row["broadcast"]) == ["0", "1", "2"]
        assert row["search"]["evaluated"] == 4 and row["search"]["size"] <= row["baseline"]
    assert run_ok(label, tmp_path, env).decode().strip() == out  # resumes: nothing to do
    assert labelled.read_package(str(records / "labels"), "records") == rows
    return source, records, dataset, rows


def test_record_label_train_eval_and_compile_with_a_users_own_model(tmp_path, env, llmcc,
                                                                     llmcc_ctl):
    source, records, dataset, rows = record_and_label(tmp_path, env, llmcc, llmcc_ctl)
    model = tmp_path / "mine.gguf"
    train = ["train", "--dataset", str(dataset), "--add", str(records), "--out", str(model),
             *TINY, "--temperature", "0.5"]  # soft targets: every tiny TU teaches something
    run_ok([llmcc_ctl, *train], tmp_path, env)
    assert gguf_strings(str(model), (KEY_COMMAND,)) == {KEY_COMMAND: "llmcc-ctl " + " ".join(train)}

    # the dataset's train split is the user's TUs here too: eval needs one to rank popular on
    labelled.write_package(str(dataset), "records", rows)
    table = run_ok([llmcc_ctl, "eval", str(records), "--model", str(model), "--dataset",
                    str(dataset)], tmp_path, env).decode()
    assert f"| on the records split ({len(SOURCES)} TUs) |" in table
    assert "| model top-3 |" in table and "| popular top-3 |" in table
    assert f"context of 1024 tokens: {len(SOURCES)}/{len(SOURCES)} (longest " in table

    compiled = run([llmcc, "-Oz", "-c", "size.c"], source,
                   {**env, "LLMCC_ADVISOR": "model", "LLMCC_MODEL": str(model),
                    "LLMCC_MODEL_SERVER": "0"})
    assert compiled.returncode == 0 and b"llmcc:" not in compiled.stderr
    [*_, event] = log_events(env)
    doctor = run_ok([llmcc_ctl, "doctor"], source, {**env, "LLMCC_MODEL": str(model)}).decode()
    assert f"ok   model {model}: 3 candidate pass lists, chosen to cover each other" in doctor
    assert event["advisor"].startswith("model:") and event["evaluated"] >= 1


def test_label_refuses_a_directory_without_records(tmp_path, env, llmcc_ctl):
    done = run([llmcc_ctl, "label", str(tmp_path)], tmp_path, env)
    assert done.returncode != 0 and b"LLMCC_RECORD" in done.stderr


def test_train_without_usable_rows_says_so(tmp_path, env, llmcc_ctl):
    done = run([llmcc_ctl, "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "m")],
               tmp_path, env)
    assert done.returncode != 0 and b"no train rows" in done.stderr


def test_record_label_grow_eval_and_compile_with_a_users_own_forest(tmp_path, env, llmcc,
                                                                   llmcc_ctl):
    source, records, dataset, rows = record_and_label(tmp_path, env, llmcc, llmcc_ctl)
    forest = tmp_path / "mine.bin"
    grow = ["train", "--forest", "--dataset", str(dataset), "--add", str(records), "--out",
            str(forest), "--trees", "4", "--leaf", "1"]
    out = run_ok([llmcc_ctl, *grow], tmp_path, env).decode()
    assert out.strip().endswith(f"4 trees on {len(SOURCES)} TUs")  # the dataset has none

    labelled.write_package(str(dataset), "records", rows)  # eval ranks popular on the train split
    table = run_ok([llmcc_ctl, "eval", str(records), "--forest", str(forest), "--dataset",
                    str(dataset)], tmp_path, env).decode()
    assert f"| on the records split ({len(SOURCES)} TUs) |" in table
    assert "| forest top-3 |" in table and "| popular top-3 |" in table

    # Leaves of one TU: a recorded TU's neighbours are itself, so it tries the list that saved
    # most on it in labelling (no other adds to that) and gets the size measured there.
    forest_env = {**env, "LLMCC_ADVISOR": "forest", "LLMCC_FOREST": str(forest)}
    for tu, row in rows.items():
        name = os.path.basename(json.loads((records / f"{tu}.json").read_text())["source"])
        compiled = run([llmcc, "-Oz", "-c", name], source, forest_env)
        assert compiled.returncode == 0 and b"llmcc:" not in compiled.stderr
        [*_, event] = log_events(env)
        best = min(row["broadcast"].values())
        expected = [LISTS[int(i)] for i, size in row["broadcast"].items()
                    if size == best < row["baseline"]]
        assert event["advisor"].startswith("forest:")
        assert [t["passes"] for t in event["tried"][1:]] == expected
        assert event["size"] == best
    assert any(row["broadcast"]["1"] < row["baseline"] for row in rows.values())


@pytest.mark.parametrize("growing", [[], ["--forest"]], ids=["model", "forest"])
def test_training_refuses_labels_measured_with_other_lists(tmp_path, env, llmcc_ctl, growing):
    dataset, mine = tmp_path / "dataset", tmp_path / "mine"
    labelled.write_lists(str(dataset), {"lists": LISTS, "broadcast": [0, 1, 2]})
    labelled.write_lists(str(mine / "labels"), {"lists": LISTS, "broadcast": [0, 2]})
    done = run([llmcc_ctl, "train", *growing, "--dataset", str(dataset), "--add", str(mine),
                "--out", str(tmp_path / "out")], tmp_path, env)
    assert done.returncode != 0
    assert b"not measured with this dataset's broadcast lists" in done.stderr
    assert not (tmp_path / "out").exists()

"""The training dataset: fetching, finding a build system, splits, one package per TU, IR tokens,
the manifest, and a whole dataset build and labelling run as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
from conftest import run

from llmcc.summary import SUMMARY_VERSION
from llmcc.train import corpus, dataset, debian, labelled, measure

# A small training package whose release tarball has an autoconf configure (so configure's
# conftest.c programs are compiled, and must not be recorded), ~30 TUs, built in ~30 s.
PACKAGE = "jansson"

SHOWSRC = """Package: libpng1.6
Binary: libpng-dev, libpng16-16, libpng-tools, libpng16-16-udeb
Version: 1.6.39-2+deb12u5
Package-List:
 libpng-dev deb libdevel optional arch=any
Files:
 5a8b0b0e5d9c8d1b4f0fd0b05b6d0f1f 2341 libpng1.6_1.6.39-2+deb12u5.dsc

Package: libpng1.6
Binary: libpng-dev, libpng16-16, libpng-tools, libpng16-16-udeb
Version: 1.6.39-2+deb12u6
Package-List:
 libpng-dev deb libdevel optional arch=any

"""


def test_source_versions_come_newest_first_from_showsrc():
    versions = debian.source_versions(SHOWSRC, "libpng1.6")
    assert versions == [("libpng1.6", "1.6.39-2+deb12u5"), ("libpng1.6", "1.6.39-2+deb12u6")]
    assert [version for _, version in debian.newest_first(versions)] == [
        "1.6.39-2+deb12u6", "1.6.39-2+deb12u5"]
    assert [version for _, version in debian.newest_first(
        [("p", "1.0~rc1-1"), ("p", "1:0.9-1"), ("p", "1.0-1")])] == ["1:0.9-1", "1.0-1", "1.0~rc1-1"]


def test_source_versions_of_a_binary_name_are_its_source_packages():
    showsrc = "Package: libzstd\nBinary: libzstd-dev, zstd\nVersion: 1.5.4+dfsg2-5\n\n" * 2
    assert debian.source_versions(showsrc, "zstd") == [("libzstd", "1.5.4+dfsg2-5")]
    assert debian.source_versions("", "zstd") == []


def _touch(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")


def test_build_system_is_found_in_a_subdirectory_the_best_file_first(tmp_path):
    for name in ("README.md", "expat/configure.ac", "expat/CMakeLists.txt", "testdata/Makefile",
                 "expat/tests/Makefile"):
        _touch(tmp_path / name)
    assert corpus.find_build_system(str(tmp_path)) == (str(tmp_path / "expat"), "CMakeLists.txt")
    _touch(tmp_path / "configure")
    assert corpus.find_build_system(str(tmp_path)) == (str(tmp_path), "configure")


def test_a_recipe_overrides_a_misleading_build_file():
    """brotli's ./configure only prints advice and its Makefile forces -O2 (never recorded)."""
    assert corpus.find_build_system("/src/brotli", "brotli") == ("/src/brotli", "CMakeLists.txt")
    assert corpus.find_build_system("/src/tcl", "tcl8.6") == ("/src/tcl/unix", "configure")
    assert corpus.build_steps("Kconfig", 2, "busybox")[0] == ("configuring", ["make", "defconfig"])
    assert corpus.build_steps("configure", 2, "curl")[0] == (
        "configuring", ["./configure", "--without-ssl", "--without-libpsl"])


def test_configure_ac_alone_is_autoreconfed_and_only_the_build_step_is_recorded(tmp_path):
    _touch(tmp_path / "pkg" / "configure.ac")
    directory, build_file = corpus.find_build_system(str(tmp_path))
    assert directory == str(tmp_path / "pkg")
    steps = corpus.build_steps(build_file, jobs=3)
    assert steps == [("generating configure", ["autoreconf", "-fi"]),
                     ("configuring", ["./configure"]), (corpus.BUILDING, ["make", "-k", "-j3"])]


def test_a_tree_without_a_build_system_is_skipped_with_the_reason(tmp_path):
    _touch(tmp_path / "a" / "b" / "c" / "Makefile")  # deeper than anyone looks
    with pytest.raises(corpus.Skip, match="no configure, CMakeLists.txt"):
        corpus.find_build_system(str(tmp_path))


def test_ir_tokens_are_words_and_punctuation_without_comment_lines():
    ir = b"; ModuleID = '/somewhere/x.bc'\n%call = tail call i32 @f(ptr %p)\n  ; a comment\n"
    assert dataset.count_tokens(ir) == 13
    assert dataset.count_tokens(ir.replace(b"/somewhere", b"/elsewhere/else")) == 13


def test_split_is_stable_and_by_package():
    assert dataset.split_of("zlib") == dataset.split_of("zlib")
    assert {dataset.split_of(p) for p in ("zlib", "lz4", "jansson", "zstd", "bc", "nettle")} == {
        "train", "validation", "test"}


def _records(tmp_path, tus: dict[str, dict[str, int]]) -> str:
    """A records tree: package -> {IR hash: token count}, each package finished."""
    for package, counts in tus.items():
        for tu in counts:
            _touch(tmp_path / "records" / package / f"{tu}.bc")
            (tmp_path / "records" / package / f"{tu}.json").write_text('{"language": "c"}')
        dataset.write_marker(str(tmp_path / "records" / package),
                             {"package": package, "tus": len(counts), "ir_tokens": counts})
    return str(tmp_path / "records")


def test_a_tu_several_packages_recorded_belongs_to_one_train_first(tmp_path):
    # zlib is a test package, lz4 a train one: the shared TU must not be held out
    records = _records(tmp_path, {"zlib": {"a": 10, "shared": 7}, "lz4": {"shared": 7, "b": 5}})
    assert dataset.owned_tus(records) == {"lz4": ["b", "shared"], "zlib": ["a"]}
    sampled = measure.sample_tus(records, per_package=10, seed=1)
    assert sorted(os.path.basename(path) for _, path in sampled) == ["a.bc", "b.bc", "shared.bc"]
    assert ("zlib", os.path.join(records, "zlib", "shared.bc")) not in sampled


def test_manifest_counts_a_shared_tu_once_and_records_the_split(tmp_path):
    records = _records(tmp_path, {"zlib": {"a": 10, "shared": 7}, "lz4": {"shared": 7, "b": 5}})
    data = dataset.manifest(records)
    assert data["packages"]["zlib"] == {"split": "test", "tus": 1, "cxx_tus": 0, "duplicates": 1,
                                        "ir_tokens": 10, "skipped": None, "partial": None}
    assert data["packages"]["lz4"]["split"] == "train"
    assert data["totals"]["total"] == {"packages": 2, "tus": 3, "ir_tokens": 22}
    assert "clang version 19" in data["clang"]
    assert "1 more TUs belong to other packages" in dataset.table(data)


def test_recording_a_tu_whose_decision_is_cached_still_records_it(tmp_path, llmcc, env):
    """A direct-mode hit never runs the frontend, so recording stands direct mode aside: a
    corpus rebuilt over a warm cache records every TU again, under the same name."""
    (tmp_path / "t.c").write_text("int f(int x) { return x * 3 + 1; }\n")
    names = []
    for attempt in ("first", "second"):
        env["LLMCC_RECORD"] = str(tmp_path / attempt)
        assert run([llmcc, "-Oz", "-c", "t.c"], cwd=tmp_path, env=env).returncode == 0
        names.append(sorted(os.listdir(tmp_path / attempt)))
    assert names[0] == names[1] and len(names[0]) == 2  # <hash>.bc and <hash>.json


@pytest.mark.slow
def test_dataset_build_and_labels_of_one_package_as_a_user_runs_them(tmp_path, env):
    work = tmp_path / "work"
    build = [sys.executable, "-m", "llmcc.train.corpus", "--work", str(work), PACKAGE]
    first = run(build, cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr.decode()
    assert f"[1/1] {PACKAGE}: " in first.stderr.decode()

    bitcodes = sorted((work / "records" / PACKAGE).glob("*.bc"))
    assert len(bitcodes) >= 10
    for bitcode in bitcodes:
        meta = json.loads(bitcode.with_suffix(".json").read_text())
        assert meta["level"] == "z" and meta["codegen"]
        assert not os.path.basename(meta["source"]).startswith("conftest"), meta["source"]
    manifest = json.loads((work / "dataset.json").read_text())
    row = manifest["packages"][PACKAGE]
    assert row["split"] == dataset.split_of(PACKAGE) and row["tus"] == len(bitcodes)
    assert row["ir_tokens"] > 1000 * len(bitcodes) and row["skipped"] is None
    assert PACKAGE in first.stdout.decode() and "total" in first.stdout.decode()

    out = tmp_path / "dataset"
    label = [sys.executable, "-m", "llmcc.train.labels", "--work", str(work), "--out", str(out),
             "--budget", "4", "--broadcast", "2", "--test-tus", "3"]
    early = run([*label, "--stage", "broadcast"], cwd=tmp_path, env=env)
    assert early.returncode != 0 and b"train TUs are not searched yet" in early.stderr
    elsewhere = run([*label, "--splits", "validation,test", "--stage", "search"], cwd=tmp_path,
                    env=env)
    assert b"no labelled TUs" in elsewhere.stdout  # nothing of those splits in this corpus
    assert not (out / f"{PACKAGE}.jsonl.xz").exists()
    labels = run(label, cwd=tmp_path, env=env)
    assert labels.returncode == 0, labels.stderr.decode()
    rows = labelled.read_package(str(out), PACKAGE)
    assert dataset.split_of(PACKAGE) == "train" and len(rows) == len(bitcodes)  # every train TU
    broadcast = labelled.read_lists(str(out))["broadcast"]
    assert 2 <= len(broadcast) <= 3  # LLVM's -Oz pipeline and up to two train winners
    assert len(set(broadcast)) == len(broadcast)  # -Oz once, even where a search found it
    for row in rows.values():
        assert row["search"]["size"] <= row["search"]["size_former"] <= row["baseline"]
        assert row["search"]["evaluated"] == 4 and row["ir_tokens"] > 0
        assert sorted(row["broadcast"]) == sorted(map(str, broadcast))
    assert "| on the test split" in labels.stdout.decode()
    stored = (out / f"{PACKAGE}.jsonl.xz").read_bytes()
    again = run(label, cwd=tmp_path, env=env)  # nothing left to do: resumes, measures nothing
    assert again.returncode == 0 and (out / f"{PACKAGE}.jsonl.xz").read_bytes() == stored

    log = work / "logs" / f"{PACKAGE}.log"
    built_at = log.stat().st_mtime
    started = time.monotonic()
    again = run(build, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr.decode()
    assert time.monotonic() - started < 15
    assert log.stat().st_mtime == built_at
    assert json.loads((work / "dataset.json").read_text()) == manifest


def test_the_test_sample_takes_every_cpp_tu_first_and_is_stable():
    from llmcc.train.labels import test_sample

    tus = [("c", f"c{i}") for i in range(40)] + [("c++", f"x{i}") for i in range(5)]
    sample = test_sample(tus, 12, 19)
    assert len(sample) == 12 and {f"x{i}" for i in range(5)} <= sample
    assert test_sample(list(reversed(tus)), 12, 19) == sample  # the order given does not matter
    assert test_sample(tus + [("c", "new")], 12, 19) - {"new"} <= sample  # stable as TUs come
    assert test_sample(tus, 12, 20) != sample
    assert test_sample(tus, 3, 19) <= {f"x{i}" for i in range(5)}


def test_the_broadcast_set_holds_llvms_oz_pipeline_once_though_searches_found_it(tmp_path):
    from llmcc.passes import OZ_PIPELINE, to_text
    from llmcc.train.labels import Labeller

    oz, gvn, dce = to_text(OZ_PIPELINE), "always-inline gvn", "always-inline dce"
    winners = {"a": oz, "b": oz, "c": oz, "d": gvn, "e": gvn, "f": dce, "g": None}
    labelled.write_package(str(tmp_path), "p", {
        tu: {"tu": tu, "split": "train", "search": {"passes": passes}}
        for tu, passes in winners.items()})
    labeller = Labeller(str(tmp_path), 1, 1.0, False, {}, {"p": list(winners)},
                        lambda package: "train", lambda package: {}, ["p"])
    indices = labeller.broadcast_set(2)
    lists = labelled.read_lists(str(tmp_path))["lists"]
    assert [lists[i] for i in indices] == [oz, gvn, dce]  # -Oz, then the 2 most frequent others


def test_train_tus_labelled_later_leave_the_registered_broadcast_set_alone(tmp_path):
    from llmcc.train.labels import Labeller

    first = {"a": "always-inline gvn", "b": "always-inline gvn", "c": "always-inline dce"}
    labelled.write_package(str(tmp_path), "p", {
        tu: {"tu": tu, "split": "train", "search": {"passes": passes}}
        for tu, passes in first.items()})
    owned = {"p": list(first)}
    labeller = Labeller(str(tmp_path), 1, 1.0, False, {}, owned, lambda package: "train",
                        lambda package: {}, ["p", "q"])
    chosen = labeller.broadcast_set(2)
    # A grown corpus: package q's TUs, one not searched yet, the others winning with a list
    # now more frequent than any in the set.
    later = {f"q{i}": "always-inline sroa" for i in range(5)}
    labelled.write_package(str(tmp_path), "q", {
        tu: {"tu": tu, "split": "train", "search": {"passes": passes}}
        for tu, passes in later.items()})
    owned["q"] = [*later, "unsearched"]
    registry = labelled.read_lists(str(tmp_path))
    assert labeller.broadcast_set(2) == chosen == registry["broadcast"]
    assert "always-inline sroa" not in registry["lists"]


def test_a_corpus_rebuilt_in_part_merges_into_the_manifest_and_searches_no_tu_held_elsewhere(
        tmp_path):
    from llmcc.train.labels import Labeller

    # The committed dataset knows two packages; this machine rebuilt only "sed" (validation),
    # whose records hold t2 and t1, a TU that grep's committed rows hold (grep owns it once
    # built): sed's manifest entry must not count t1 either.
    out = tmp_path / "dataset"
    grep = {"split": "train", "tus": 7, "ir_tokens": 70}
    committed = {"packages": {"grep": grep, "sed": {"split": "validation", "tus": 0,
                                                    "ir_tokens": 0}}}
    out.mkdir()
    (out / "corpus.json").write_text(json.dumps(committed))
    labelled.write_package(str(out), "grep", {"t1": {"tu": "t1", "package": "grep",
                                                     "split": "train"}})
    labelled_t2 = {"tu": "t2", "package": "sed", "split": "validation",
                   "summary": {"version": SUMMARY_VERSION}}
    labelled.write_package(str(out), "sed", {"t2": labelled_t2})
    sed = tmp_path / "work" / "records" / "sed"
    dataset.write_marker(str(sed), {"ir_tokens": {"t1": 5, "t2": 3}})
    for tu in ("t1", "t2"):
        (sed / f"{tu}.bc").write_bytes(b"")
        (sed / f"{tu}.json").write_text(json.dumps({"language": "c"}))
    labeller = Labeller.corpus(str(tmp_path / "work"), str(out), 1, 1.0, False)
    manifest = json.loads((out / "corpus.json").read_text())
    assert manifest["packages"]["grep"] == grep  # not rebuilt: kept as committed
    # rebuilt: as its records are now, without grep's TU
    assert {key: manifest["packages"]["sed"][key] for key in ("tus", "duplicates",
                                                              "ir_tokens")} == {
        "tus": 1, "duplicates": 1, "ir_tokens": 3}
    assert manifest["totals"]["train"] == {"packages": 1, "tus": 7, "ir_tokens": 70}
    assert manifest["totals"]["total"] == {"packages": 2, "tus": 8, "ir_tokens": 73}
    assert labeller.missing == ["grep"]
    assert labeller.owned == {"sed": ["t2"]}  # t1 stays grep's: not searched as sed's
    labeller.search(4, 1.0, 0, 19)
    assert labelled.read_package(str(out), "sed") == {"t2": labelled_t2}

    # The test sample is drawn from every test package's TUs: not from some of them.
    sample = Labeller(str(out), 1, 1.0, False, {}, {"zstd": ["t2"]}, lambda package: "test",
                      lambda package: {}, ["zstd"])
    sample.missing = ["bc"]
    with pytest.raises(SystemExit, match="build bc first"):
        sample.search(4, 1.0, 10, 19)


def test_broadcast_skips_labelled_tus_a_rebuilt_corpus_no_longer_records(tmp_path):
    from llmcc.train.labels import Labeller

    # A package rebuilt on a fresh machine gave one TU new IR (a build date, say): the row
    # labelled from the old IR has no bitcode in these records and stays as it is.
    row = {"tu": "gone", "split": "train", "baseline": 100, "search": {"passes": None}}
    labelled.write_package(str(tmp_path), "p", {"gone": row})
    labelled.write_lists(str(tmp_path), {"lists": ["always-inline gvn"], "broadcast": [0]})
    records = tmp_path / "records"
    records.mkdir()
    labeller = Labeller(str(tmp_path), 1, 1.0, False, {"p": str(records)}, {"p": ["gone"]},
                        lambda package: "train", lambda package: {}, ["p"])
    labeller.measure_broadcast([0])
    assert labelled.read_package(str(tmp_path), "p") == {"gone": row}


def test_a_tu_whose_baseline_runs_past_the_time_limit_is_left_for_a_later_run(
        tmp_path, llmcc, llmcc_ctl, env):
    """A time-out says as much about the machine's load as about the TU: the label run leaves
    the TU unlabelled and says so, instead of recording an error no later run would retry."""
    (tmp_path / "t.c").write_text("int f(int x) { return x * 3 + 1; }\n")
    records, lists = tmp_path / "records", tmp_path / "dataset"
    assert run([llmcc, "-Oz", "-c", "t.c"], cwd=tmp_path,
               env={**env, "LLMCC_RECORD": str(records)}).returncode == 0
    labelled.write_lists(str(lists), {"lists": ["always-inline gvn"], "broadcast": [0]})
    label = [llmcc_ctl, "label", str(records), "--budget", "2", "--jobs", "1",
             "--dataset", str(lists), "--timeout"]
    done = run([*label, "0.001"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert b"left unlabelled" in done.stdout + done.stderr
    assert labelled.read_package(str(records / "labels"), "records") == {}
    assert run([*label, "30"], cwd=tmp_path, env=env).returncode == 0
    (row,) = labelled.read_package(str(records / "labels"), "records").values()
    assert row["baseline"] > 0 and "error" not in row


def test_a_broadcast_list_that_runs_past_the_time_limit_is_measured_by_a_later_run(
        tmp_path, llmcc, llmcc_ctl, env, monkeypatch, capsys):
    """A list measured on a busy machine may time out: it stays unmeasured (a missing size
    reads as a refusal to every model and evaluation) and the next run measures it; a baseline
    that times out leaves the whole row as it was, and the run goes on."""
    from llmcc import llvm_worker, optimize
    from llmcc.train.labels import Labeller

    (tmp_path / "t.c").write_text("int f(int x) { return x * 3 + 1; }\n")
    records, lists = tmp_path / "records", tmp_path / "dataset"
    assert run([llmcc, "-Oz", "-c", "t.c"], cwd=tmp_path,
               env={**env, "LLMCC_RECORD": str(records)}).returncode == 0
    labelled.write_lists(str(lists), {"lists": ["always-inline gvn"], "broadcast": [0]})
    done = run([llmcc_ctl, "label", str(records), "--budget", "2", "--jobs", "1",
                "--dataset", str(lists)], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    labels = str(records / "labels")
    (before,) = labelled.read_package(labels, "records").values()
    labelled.write_lists(labels, {"lists": ["always-inline gvn",
                                            "always-inline mem2reg default<Oz>"],
                                  "broadcast": [0, 1]})
    monkeypatch.chdir(tmp_path)  # the Labeller's PATH lookups as the command's

    Labeller.user(str(records), 1, 0.001).measure_broadcast([0, 1])
    (row,) = labelled.read_package(labels, "records").values()
    assert row["broadcast"] == before["broadcast"] and "tool_failed" not in row
    assert "left partly unmeasured" in capsys.readouterr().err

    real_run = optimize.run

    def opt_runs_out_of_time(cmd, timeout):  # a real opt, given no time at all
        return real_run(cmd, 0.001 if "opt" in os.path.basename(cmd[0]) else timeout)

    class HurriedWorker(llvm_worker.Worker):  # the same for lists applied in the LLVM worker,
        def apply(self, *args):               # stopped, so that even a list LLVM applies within
            os.kill(self.pid, signal.SIGSTOP)  # the millisecond cannot be answered in time
            self.timeout = 0.001
            return super().apply(*args)

    for apply_one_by_one in (False, True):
        monkeypatch.setattr(optimize, "run", opt_runs_out_of_time)
        monkeypatch.setattr(llvm_worker, "Worker", HurriedWorker)
        if apply_one_by_one:
            monkeypatch.setattr(llvm_worker, "library_beside", lambda opt: None)
        Labeller.user(str(records), 1, 30).measure_broadcast([0, 1])
        (row,) = labelled.read_package(labels, "records").values()
        assert "1" not in row["broadcast"] and "tool_failed" not in row
        assert "ran past --timeout" in capsys.readouterr().err

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    Labeller.user(str(records), 1, 30).measure_broadcast([0, 1])
    (row,) = labelled.read_package(labels, "records").values()
    assert row["broadcast"]["1"] > 0 and row["broadcast"]["0"] == before["broadcast"]["0"]

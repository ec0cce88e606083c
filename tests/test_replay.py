"""`llmcc-ctl eval DIR` on a project no llmcc build ran: its compile_commands.json (else its
sources) replayed through llmcc with LLMCC_RECORD, the TUs labelled, and the tables printed,
without writing any of the project's files (llmcc.train.replay)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import run
from test_forest import TEXTS, _ratios, _rows

from llmcc.train import forest, labelled, replay

A_C = """#include "twice.h"
int table[64];
static int helper(int x) { return x * 3 + 1; }
int work(int n) {
  int s = 0;
  for (int i = 0; i < n; i++) s += helper(i) + table[i & 63];
  return s + twice(n);
}
"""
B_CPP = """#include <algorithm>
#include <vector>
int sorted_sum(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  int s = 0;
  for (int x : v) s += x;
  return s;
}
"""


def test_a_replayed_compile_writes_only_to_the_scratch_directory_and_is_size_optimised():
    scratch = "/scratch"
    assert replay.replayed(["cc", "-O2", "-Iinc", "-MD", "-MF", "a.d", "-o", "a.o", "-c", "a.c"],
                           scratch) == ["-O2", "-Iinc", "-c", "a.c", "-o", "/scratch/out.o",
                                        "-Oz"]
    assert replay.replayed(["g++", "-Os", "-oa.o", "-MMD", "-MTa.o", "-MP", "-c", "b.cc"],
                           scratch) == ["-Os", "-c", "b.cc", "-o", "/scratch/out.o"]
    assert replay.replayed(["clang", "-c", "x.c", "--serialize-diagnostics", "x.dia", "-Oz",
                            "-O0"], scratch)[-1] == "-Oz"  # the last -O wins, so -Oz goes last


def test_a_compile_is_cxx_by_its_compiler_or_its_file_behind_any_launcher():
    assert replay.Compile("/", ["g++", "-c", "x.c"], "x.c").cxx
    assert replay.Compile("/", ["cc", "-c", "x.cpp"], "x.cpp").cxx
    assert not replay.Compile("/", ["/usr/bin/clang-19", "-c", "x.c"], "x.c").cxx
    behind = replay.Compile("/", ["/usr/bin/ccache", "llmcc", "clang++", "-c", "x.c"], "x.c")
    assert behind.arguments == ["clang++", "-c", "x.c"] and behind.cxx


@pytest.mark.parametrize("text", ["[{not json", '{"directory": "/"}', '[{"file": "x.c"}]', '[3]',
                                  '[{"directory": "/", "file": "x.c", "command": "cc \'"}]'])
def test_a_file_that_is_no_compilation_database_is_a_clear_error(tmp_path, text):
    path = tmp_path / replay.DATABASE
    path.write_text(text)
    with pytest.raises(ValueError, match="is not a compilation database"):
        replay.from_database(str(path))


def test_without_a_database_every_source_is_compiled_alone(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ("a.c", "sub/b.cpp", "sub/notes.txt", ".git/c.c"):
        (tmp_path / name).write_text("")
    found = replay.find(str(tmp_path))
    assert [(c.directory, c.arguments, c.cxx) for c in found] == [
        (str(tmp_path), ["clang", "-Oz", "-c", "a.c"], False),
        (str(tmp_path / "sub"), ["clang", "-Oz", "-c", "b.cpp"], True)]


def _dataset(path) -> None:
    """A dataset of three broadcast lists and synthetic train rows (for the popular lists)."""
    rows = _rows()
    for row in rows:
        row["search"] = {"size": row["baseline"], "size_former": row["baseline"]}
    labelled.write_lists(str(path), {"lists": TEXTS, "broadcast": [0, 1, 2]})
    labelled.write_package(str(path), "synthetic", {row["tu"]: row for row in rows})


def _grow(path) -> None:
    """A small forest file grown on the synthetic train rows."""
    rows = _rows()
    path.write_bytes(forest.shipped([r["summary"] for r in rows], _ratios(rows), TEXTS, trees=4))


def _snapshot(root) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_eval_of_a_project_replays_its_database_labels_and_scores_its_tus(tmp_path, env,
                                                                         llmcc_ctl):
    project = tmp_path / "project"
    (project / "src" / "inc").mkdir(parents=True)
    (project / "build").mkdir()
    (project / "src" / "a.c").write_text(A_C)
    (project / "src" / "inc" / "twice.h").write_text(
        "static inline int twice(int x) { return 2 * x; }\n")
    (project / "src" / "b.cpp").write_text(B_CPP)
    (project / "src" / "broken.c").write_text("int broken( {\n")
    build = str(project / "build")
    entries = [
        {"directory": build, "file": "../src/a.c",
         "command": "/usr/bin/cc -O2 -I../src/inc -MD -MF a.d -o a.o -c ../src/a.c"},
        {"directory": build, "file": "../src/b.cpp",
         "arguments": ["g++", "-Os", "-o", "b.o", "-c", "../src/b.cpp"]},
        {"directory": build, "file": "../src/broken.c", "command": "cc -c ../src/broken.c"},
        {"directory": str(project / "gone"), "file": "x.c", "command": "cc -c x.c"}]
    (project / replay.DATABASE).write_text(json.dumps(entries))
    dataset, grown, records = tmp_path / "dataset", tmp_path / "forest.bin", tmp_path / "mine"
    _dataset(dataset)
    _grow(grown)
    before = _snapshot(project)
    command = [llmcc_ctl, "eval", str(project), "--forest", str(grown), "--dataset",
               str(dataset), "--records", str(records), "--budget", "4", "--jobs", "1"]

    done = run(command, tmp_path, env)
    assert done.returncode == 0, done.stderr.decode()
    assert (f"{project}: 4 compiles replayed through llmcc, 2 failed; 2 TUs recorded in "
            f"{records}") in done.stderr.decode()
    table = done.stdout.decode()
    assert "| on the mine split (2 TUs) |" in table and "| forest top-3 |" in table
    assert "| c | 1 |" in table and "| c++ | 1 |" in table
    assert _snapshot(project) == before  # no object, no dependency file, nothing changed
    levels = {os.path.basename(meta["source"]): meta["level"]
              for meta in (json.loads(p.read_text()) for p in records.glob("*.json"))}
    assert levels == {"a.c": "z", "b.cpp": "s"}  # -O2 compiled at -Oz, -Os kept

    # A TU the database no longer lists is no longer scored, though its labels stay.
    (project / replay.DATABASE).write_text(json.dumps(entries[:1]))
    done = run(command, tmp_path, env)
    assert done.returncode == 0, done.stderr.decode()
    assert "| on the mine split (1 TUs) |" in done.stdout.decode()
    assert len(labelled.read_package(str(records / "labels"), "mine")) == 2


def test_eval_or_label_of_what_is_no_directory_says_so(tmp_path, env, llmcc_ctl):
    for command in ("eval", "label"):
        done = run([llmcc_ctl, command, str(tmp_path / "missing")], tmp_path, env)
        assert done.returncode != 0
        assert done.stderr.decode().strip() == (f"llmcc-ctl {command}: {tmp_path / 'missing'} "
                                                "is not a directory")


def test_eval_of_a_project_without_a_recordable_tu_says_so(tmp_path, env, llmcc_ctl):
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "broken.c").write_text("int broken( {\n")
    done = run([llmcc_ctl, "eval", str(tmp_path / "project"), "--records",
                str(tmp_path / "r")], tmp_path, env)
    assert done.returncode != 0
    assert b"no TU of" in done.stderr and b"was recorded" in done.stderr


def test_eval_of_labels_without_records_scores_every_labelled_tu(tmp_path, env, llmcc_ctl):
    """bench/half_package.py hands eval a dataset package's labels alone (the dataset keeps
    no IR): they are scored as they are, not taken for a project to replay."""
    dataset, grown, half = tmp_path / "dataset", tmp_path / "forest.bin", tmp_path / "half"
    _dataset(dataset)
    _grow(grown)
    held = {row["tu"]: {**row, "package": "half", "language": "c",
                        "search": {"size": row["baseline"], "size_former": row["baseline"]}}
            for row in _rows(seed=1, packages=1, per_package=7)}
    labelled.write_package(str(half / "labels"), "half", held)
    labelled.write_lists(str(half / "labels"), {"lists": TEXTS, "broadcast": [0, 1, 2]})

    done = run([llmcc_ctl, "eval", str(half), "--forest", str(grown), "--dataset",
                str(dataset)], tmp_path, env)
    assert done.returncode == 0, done.stderr.decode()
    assert "| on the half split (7 TUs) |" in done.stdout.decode()
    assert b"replayed" not in done.stderr

"""llmcc really chooses: on a TU where one of the advisor's lists beats clang's -Oz, the object
written is that list's, strictly smaller than plain clang's, and the log names the list. The
advisor's data is the test's own (a private copy of the package), so retraining cannot move it.

Every other test accepts clang's own object as a valid outcome (never larger is the promise),
so a wrapper that always kept clang's pipeline would pass them all; this one it fails.
"""

from __future__ import annotations

import json
import subprocess

from conftest import LLVM_BIN, frontend_ir, log_events, run

from llmcc.objfile import read_object
from llmcc.passes import to_pipeline

# clang -Oz replaces this loop by its closed form (a longer run of multiplies and shifts);
# a list without clang's loop passes keeps the short loop, and the object is smaller.
UNIT_C = """int sum_of_odd_squares(int n) {
    int s = 0;
    for (int i = 0; i < n; i++) s += (2 * i + 1) * (2 * i + 1);
    return s;
}
"""
# The advisor's data for this test: clang's own pipeline again (no gain), the list that wins,
# and one that makes the object larger. The winner is not first: llmcc must compare them all.
LISTS = ("always-inline default<Oz>", "always-inline sroa<modify-cfg> tailcallelim",
         "always-inline instcombine<no-verify-fixpoint>")
WINNER = LISTS[1]


def test_llmcc_keeps_a_smaller_object_from_a_popular_list_and_logs_it(tmp_path, clang, llmcc,
                                                                       env, package_copy):
    (package_copy / "advisor" / "popular.json").write_text(
        json.dumps({"lists": [{"passes": passes} for passes in LISTS]}))
    (tmp_path / "unit.c").write_text(UNIT_C)
    plain = run([clang, "-Oz", "-c", "unit.c", "-o", "plain.o"], cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr.decode()
    done = run([llmcc, "-Oz", "-c", "unit.c", "-o", "unit.o"], cwd=tmp_path,
               env={**env, "LLMCC_ADVISOR": "popular", "LLMCC_CANDIDATES": str(len(LISTS))})
    assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()

    ours = read_object((tmp_path / "unit.o").read_bytes())
    theirs = read_object((tmp_path / "plain.o").read_bytes())
    assert ours.size < theirs.size, (
        f"llmcc kept {ours.size} bytes, plain clang -Oz {theirs.size}: no popular list won "
        f"(log: {log_events(env)})")
    assert ours.defined == theirs.defined and ours.undefined <= theirs.undefined

    (event,) = log_events(env)
    assert event["outcome"] == "miss"
    assert event["baseline_size"] == theirs.size and event["size"] == ours.size
    assert event["passes"] == WINNER, event
    baseline, *candidates = (tried["passes"] for tried in event["tried"])
    assert baseline is None and set(candidates) == set(LISTS)  # clang's pipeline, then each list

    # the list the log names is the one that made the object: rebuilt from it with opt and
    # clang by hand (frontend IR, the list, code generation only), it gives the same bytes
    frontend_ir(clang, tmp_path / "unit.c", tmp_path / "unit.bc")
    passes = tuple(event["passes"].split())
    subprocess.run([f"{LLVM_BIN}/opt", "-relocation-model=pic", f"-passes={to_pipeline(passes)}",
                    "unit.bc", "-o", "listed.bc"], cwd=tmp_path, check=True)
    subprocess.run([clang, "-Oz", "-c", "-x", "ir", "listed.bc", "-Xclang",
                    "-disable-llvm-passes", "-o", "listed.o"], cwd=tmp_path, check=True)
    assert (tmp_path / "listed.o").read_bytes() == (tmp_path / "unit.o").read_bytes()

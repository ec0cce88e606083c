"""The model advisor end to end: `llmcc` with LLMCC_ADVISOR=model compiles through the real
clang, opt and llama.cpp on the tiny model of test_model, in-process and through the per-user
server, and a real project still builds and passes its tests with it.

Whatever is wrong with the model (missing, damaged, not llmcc's, for another summary format) or
with the server asked first, a compile ends as plain clang's would, with one llmcc warning; a
decision is cached only when the model answered it, and the model file's content is part of
every cache key.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from pathlib import Path

import pytest
from conftest import (
    SIZE_C,
    SIZE_H,
    assert_no_larger,
    log_events,
    log_outcomes,
    model_server_status,
    model_servers_under,
    object_size,
    report_sizes,
    run_ok,
    zlib_tested_with,
)
from test_faults import ARGS, _assert_like_plain, _build, _ours, tree  # noqa: F401
from test_model import Trained, one_thread, summaries  # noqa: F401 - fixtures used here
from test_server import free_port, model  # noqa: F401

from llmcc import events, summary
from llmcc.advisor import client
from llmcc.advisor.model_runtime import ModelRuntime
from llmcc.passes import to_text
from llmcc.train import export as export_module
from llmcc.train.export import export
from llmcc.train.model import Config, Llama
from llmcc.train.tokenizer import PassTokenizer

K = 3
OBJECT = "out/size.o"


def digest(path: str) -> str:
    """What the advisor's identity names: the model file's content."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def with_model(env: dict[str, str], path: str, model_server: bool) -> dict[str, str]:
    return {**env, "LLMCC_ADVISOR": "model", "LLMCC_MODEL": path,
            "LLMCC_CANDIDATES": str(K), "LLMCC_MODEL_SERVER": str(int(model_server))}


@pytest.fixture
def runtime_env(env: dict[str, str], xdg: str) -> dict[str, str]:
    """The test's environment with a runtime directory of its own: the per-user servers its
    compiles start are found there, and killed after the test."""
    env["XDG_RUNTIME_DIR"] = xdg
    return env


def ctl_server_status(llmcc_ctl: str, env: dict[str, str]) -> str:
    return model_server_status(run_ok([llmcc_ctl, "server", "status"], None, env).decode())


@pytest.fixture(scope="module")
def plain(tmp_path_factory, clang: str) -> tuple:
    """Plain clang's compile of size.c: exit code, stderr and outputs."""
    root = tmp_path_factory.mktemp("plain")
    (root / "out").mkdir()
    (root / "size.c").write_text(SIZE_C)
    (root / "size.h").write_text(SIZE_H)
    return _build(clang, ARGS, root, dict(os.environ))


@pytest.fixture(scope="module")
def expected_lists(model: Trained, summaries: list[dict]) -> set[str]:  # noqa: F811
    """The k lists the Q8_0 model ranks first for size.c, asked in this process."""
    with ModelRuntime(model.paths["Q8_0"]) as runtime:
        ranked = runtime.rank(summary.to_prompt(summaries[0]), K)
    assert len(ranked) == K
    return {to_text(passes) for passes in ranked}


def assert_model_decided(event: dict, path: str, lists: set[str]) -> None:
    """A miss that measured the model's own k lists, its advisor named by the file's content."""
    assert event["outcome"] == events.MISS
    assert event["advisor"] == "model:" + digest(path)
    assert "advisor_failure" not in event and "tool_failure" not in event
    assert event["evaluated"] == K
    assert {tried["passes"] for tried in event["tried"][1:]} == lists


# --- a good model --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def twins(model: Trained, tmp_path_factory) -> str:  # noqa: F811
    """An ensemble of the tiny model and a copy of it: it answers as the model does, through
    every file of an ensemble."""
    directory = tmp_path_factory.mktemp("twins")
    twin = directory / "twins-1.gguf"
    shutil.copy(model.paths["Q8_0"], twin)
    return export(model.model, model.tokenizer, str(directory / "twins.gguf"),
                  dataset_sha256="0", command="test", members=[(twin.name, digest(str(twin)))])


@pytest.mark.parametrize("ensemble", [False, True], ids=["model", "ensemble"])
def test_model_advisor_compiles_alike_in_process_and_through_the_per_user_server(
        tree, runtime_env, llmcc, llmcc_ctl, model, plain, expected_lists, tmp_path,  # noqa: F811
        twins, ensemble):
    path = twins if ensemble else model.paths["Q8_0"]
    objects = {}
    for model_server in (False, True):
        env = with_model(runtime_env, path, model_server)
        # each way decides afresh, in a cache of its own
        env["LLMCC_CACHE_DIR"] = str(tmp_path / f"cache-{model_server}")
        env["LLMCC_LOG"] = str(tmp_path / f"log-{model_server}")
        env["LLMCC_MIN_GAIN"] = "99"  # only the forest reads it: the model tries its lists
        first = _build(llmcc, ARGS, tree, env)
        _assert_like_plain(plain, first, tree, None)
        [event] = log_events(env)
        assert_model_decided(event, path, expected_lists)
        objects[model_server] = first[2][OBJECT]
        assert object_size(objects[model_server]) <= object_size(plain[2][OBJECT])
        status = ctl_server_status(llmcc_ctl, env)
        if model_server:
            assert f"model {path}," in status and ", 1 requests" in status, status
        else:
            assert status == "no model server is running\n"
        again = _build(llmcc, ARGS, tree, env)
        assert again == first
        assert log_outcomes(env)[1] in (events.HIT, events.DIRECT_HIT)
        # the hit asked no model: the same server, the same request count (its memory may move)
        assert re.sub(r"[\d.]+ MB", "", ctl_server_status(llmcc_ctl, env)) == \
            re.sub(r"[\d.]+ MB", "", status)
    assert objects[True] == objects[False]
    doctor = run_ok([llmcc_ctl, "doctor"], None, env).decode()
    assert f"ok   model {path}: " in doctor
    assert ("an ensemble of 2 models" in doctor) == ensemble


def test_llmcc_ctl_id_and_cache_keys_follow_the_model_files_content(
        tree, env, llmcc, llmcc_ctl, model, tmp_path):  # noqa: F811
    def advisor_id(path: str) -> str:
        line = run_ok([llmcc_ctl, "id"], None, with_model(env, path, False)).decode()
        [advisor] = [word for word in line.split() if word.startswith("advisor=")]
        return advisor

    assert advisor_id(model.paths["F32"]) == "advisor=model:" + digest(model.paths["F32"])
    assert advisor_id(model.paths["Q8_0"]) == "advisor=model:" + digest(model.paths["Q8_0"])
    assert advisor_id(model.paths["F32"]) != advisor_id(model.paths["Q8_0"])

    current = tmp_path / "model.gguf"
    shutil.copy(model.paths["Q8_0"], current)
    env = with_model(env, str(current), False)
    _build(llmcc, ARGS, tree, env)
    _build(llmcc, ARGS, tree, env)
    assert log_outcomes(env) == [events.MISS, events.DIRECT_HIT]
    # Retrained weights in a file of the same size, put in place as `export` does (rename)...
    blob = bytearray(current.read_bytes())
    blob[-4] ^= 1  # the lowest mantissa byte of the last norm weight
    (tmp_path / "new.gguf").write_bytes(blob)
    os.replace(tmp_path / "new.gguf", current)
    retrained = advisor_id(str(current))
    assert retrained == "advisor=model:" + digest(str(current)) != advisor_id(
        model.paths["Q8_0"])
    _build(llmcc, ARGS, tree, env)
    # ... and another model written over the same file
    shutil.copyfile(model.paths["F32"], current)
    assert advisor_id(str(current)) == advisor_id(model.paths["F32"])
    _build(llmcc, ARGS, tree, env)
    assert log_outcomes(env) == [events.MISS, events.DIRECT_HIT, events.MISS, events.MISS]
    assert ["advisor=" + event["advisor"] for event in log_events(env)] == [
        advisor_id(model.paths["Q8_0"])] * 2 + [retrained, advisor_id(model.paths["F32"])]


# --- bad model files -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad_models(model: Trained, tmp_path_factory) -> dict[str, str]:  # noqa: F811
    directory = tmp_path_factory.mktemp("bad")
    blob = Path(model.paths["Q8_0"]).read_bytes()
    paths = {kind: str(directory / f"{kind}.gguf")
             for kind in ("missing", "truncated", "half", "garbage", "no-lists", "old-summary",
                          "lost-member", "changed-member")}
    Path(paths["truncated"]).write_bytes(blob[:1000])  # cut in the candidate lists
    Path(paths["half"]).write_bytes(blob[:len(blob) // 2])  # whole metadata, half the weights
    Path(paths["garbage"]).write_bytes(random.Random(1).randbytes(len(blob)))
    # A model llama.cpp loads, with no candidate pass lists in it
    tokenizer = PassTokenizer.train(model.prompts, 400, [])
    bare = Llama(Config(vocab_size=tokenizer.vocab_size, context=1024, dim=32, layers=1,
                        heads=2, kv_heads=2, hidden=64))
    export(bare, tokenizer, paths["no-lists"], dataset_sha256="0", command="test")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_module, "SUMMARY_VERSION", summary.SUMMARY_VERSION + 1)
        export(model.model, model.tokenizer, paths["old-summary"], dataset_sha256="0",
               command="test")
    # Ensembles whose member is gone, or was replaced after the head named its digest
    member = directory / "member.gguf"
    shutil.copy(model.paths["Q8_0"], member)
    for kind, name in (("lost-member", "gone.gguf"), ("changed-member", member.name)):
        export(model.model, model.tokenizer, paths[kind], dataset_sha256="0", command="test",
               members=[(name, digest(str(member)))])
    member.write_bytes(blob[:len(blob) // 2])
    return paths


@pytest.mark.parametrize("model_server", [False, True], ids=["in-process", "server"])
@pytest.mark.parametrize("kind, warning", [
    ("missing", "No such file or directory"),
    ("truncated", "holds no candidate pass lists"),
    ("half", "the model failed"),
    ("garbage", "holds no candidate pass lists"),
    ("no-lists", "holds no candidate pass lists"),
    ("old-summary", "summary version"),
    ("lost-member", "gone.gguf: No such file or directory"),
    ("changed-member", "member.gguf is not the ensemble member"),
])
def test_a_bad_model_file_warns_once_compiles_and_is_never_cached(
        tree, runtime_env, llmcc, llmcc_ctl, bad_models, plain, kind, warning,  # noqa: F811
        model_server):
    path = bad_models[kind]
    env = with_model(runtime_env, path, model_server)
    for _ in range(2):
        tuned = _build(llmcc, ARGS, tree, env)
        _assert_like_plain(plain, tuned, tree, warning)
        assert path in _ours(tuned[1])[0]
        if kind == "missing":  # no identity: plain clang compiles it
            assert tuned[2] == plain[2]
        else:
            assert "did not cache this TU's decision" in _ours(tuned[1])[0]
    outcome = events.FALLBACK if kind == "missing" else events.MISS
    assert log_outcomes(env) == [outcome, outcome]
    if kind != "missing":
        assert all(event["advisor_failure"] for event in log_events(env))
    assert ctl_server_status(llmcc_ctl, env) == "no model server is running\n"
    assert model_servers_under(runtime_env["XDG_RUNTIME_DIR"]) == []


# --- a server that does not answer ---------------------------------------------------------------

@pytest.mark.parametrize("model_server", [False, True], ids=["in-process", "server"])
def test_a_dead_server_warns_once_and_the_model_that_answered_instead_is_cached(
        tree, runtime_env, llmcc, model, plain, expected_lists, model_server):  # noqa: F811
    path = model.paths["Q8_0"]
    env = with_model(runtime_env, path, model_server)
    reference = _build(llmcc, ARGS, tree, {**env, "LLMCC_MODEL_SERVER": "0",
                                           "LLMCC_CACHE": "0", "LLMCC_LOG": os.devnull})
    dead = f"http://127.0.0.1:{free_port()}"
    env["LLMCC_SERVER"] = dead
    tuned = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, tuned, tree, f"no model server at {dead}")
    assert tuned[2] == reference[2]
    [event] = log_events(env)
    assert_model_decided(event, path, expected_lists)
    again = _build(llmcc, ARGS, tree, env)
    _assert_like_plain(plain, again, tree, None)  # a hit: no model asked, no warning
    assert again[2] == reference[2]
    assert log_outcomes(env)[1] in (events.HIT, events.DIRECT_HIT)


# --- a real project ------------------------------------------------------------------------------

@pytest.mark.slow
def test_zlib_built_with_the_model_advisor_passes_its_test_and_objects_are_never_larger(
        tmp_path, runtime_env, llmcc, clang, model, debian_source):  # noqa: F811
    env = with_model(runtime_env, model.paths["Q8_0"], True)
    ours_objects, plain_objects = zlib_tested_with(llmcc, clang, debian_source, tmp_path, env)
    decided = [event for event in log_events(env) if event["outcome"] == events.MISS]
    assert decided and all(event["advisor"] == "model:" + digest(model.paths["Q8_0"])
                           and "advisor_failure" not in event and event["evaluated"] == K
                           for event in decided)
    assert len(client.servers()) == 1  # parallel compiles started one server

    total, plain_total = assert_no_larger(ours_objects, plain_objects)
    assert total <= plain_total
    report_sizes(f"zlib with the model advisor ({len(plain_objects)} objects, -Oz)", total,
                 plain_total)


# --- GPU layers and doctor ------------------------------------------------------------------------

def test_gpu_layers_reach_the_server_and_doctor_reports_the_model(
        tree, runtime_env, llmcc, llmcc_ctl, model):  # noqa: F811
    env = {**with_model(runtime_env, model.paths["Q8_0"], True), "LLMCC_GPU_LAYERS": "3"}
    rc, stderr, _ = _build(llmcc, ARGS, tree, env)
    assert rc == 0 and _ours(stderr) == []
    [(path, health)] = client.servers()
    assert health["gpu_layers"] == 3 and path.endswith("-gpu3.sock")
    doctor = run_ok([llmcc_ctl, "doctor"], None, env).decode()
    assert f"ok   model {model.paths['Q8_0']}: " in doctor
    assert "chosen by likelihood alone (the file has no coverage table)" in doctor
    assert "GPU offload: " in doctor  # available, or how to rebuild llama-cpp-python for it
    if "runs on the CPU only" in doctor:
        assert "(LLMCC_GPU_LAYERS is ignored)" in doctor and "-DGGML_CUDA=on" in doctor

"""llmcc's own model, end to end in seconds: a tiny llama trained on real TU summaries, exported
to GGUF, and read back by llama.cpp, which must split prompts into the same tokens and score
candidate pass lists as PyTorch does."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REASON = "needs the train extra (pip install -e '.[train]'): torch, tokenizers, gguf"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("tokenizers", reason=REASON)
pytest.importorskip("gguf", reason=REASON)

from conftest import SIZE_C, SIZE_H, frontend_ir

from llmcc import summary, toolchain
from llmcc.advisor.model_runtime import (
    COVERAGE_SCALE,
    KEY_CANDIDATES,
    KEY_COMMAND,
    KEY_CONFIG,
    KEY_COVERAGE,
    KEY_DATASET,
    KEY_MEMBERS,
    KEY_SUMMARY_VERSION,
    NONE,
    ModelError,
    ModelRuntime,
    answer_weights,
    answers,
    coverage_of,
    gguf_strings,
    list_token,
    lists_by_token,
    prompt_text,
)
from llmcc.passes import OZ_PIPELINE, parse, random_list, validate
from llmcc.train import export as export_module
from llmcc.train.export import export, read_metadata
from llmcc.train.fit import candidate_weights, dataset_sha256, train
from llmcc.train.model import Config, Llama, next_logprobs
from llmcc.train.tokenizer import GGUF_MODEL, GGUF_PRE, PassTokenizer

SOURCES = {
    "size.c": SIZE_C,
    "strings.c": """#include <string.h>
#include <stdlib.h>
#include <stdio.h>
char *join(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    char *out = malloc(n + m + 1);
    if (!out) return NULL;
    memcpy(out, a, n); memcpy(out + n, b, m + 1);
    return out;
}
int count(const char *s, char c) { int k = 0; while (*s) k += *s++ == c; return k; }
void show(const char *s) { printf("%s %d\\n", s, count(s, 'a')); }
""",
    "math.c": """static double sq(double x) { return x * x; }
double norm2(const double *v, int n) { double s = 0; for (int i = 0; i < n; i++) s += sq(v[i]);
    return s; }
long fact(int n) { return n <= 1 ? 1 : n * fact(n - 1); }
unsigned hash(const unsigned char *p, unsigned n) { unsigned h = 2166136261u;
    for (unsigned i = 0; i < n; i++) { h ^= p[i]; h *= 16777619u; } return h; }
""",
    "table.c": """struct entry { const char *name; int (*fn)(int); };
static int twice(int x) { return 2 * x; }
static int negate(int x) { return -x; }
static const struct entry table[] = { {"twice", twice}, {"negate", negate} };
int apply(int which, int x) { return table[which & 1].fn(x); }
__attribute__((always_inline)) static inline int clamp(int x) { return x < 0 ? 0 : x; }
int run(int *v, int n) { int s = 0; for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++) s += clamp(apply(i, v[j])); return s; }
""",
}

# Text llama.cpp and the training tokenizer must split alike: pass names, list tokens and
# special tokens written as plain text, digits, runs of spaces, newlines, tabs, punctuation and
# non-ASCII.
TRICKY = [
    "gvn sroa<modify-cfg> always-inline <|end|><|answer|> <|passes:gvn|>",
    "  two  spaces\tand tab\n\nnewlines 123456789 x=-1.5e10; a->b[3]",
    "libraries: __builtin_memcpy, _ZN4core3fmt5write17h1234abcdE, strnlen_s",
    "é ü 日本語 emoji 🙂",
]
CANDIDATES = [OZ_PIPELINE, validate(["sroa<modify-cfg>", "instcombine<no-verify-fixpoint>",
                                     "gvn"]),
              validate(["mem2reg", "simplifycfg", "tailcallelim", "dce"]),
              *(random_list(random.Random(seed)) for seed in range(5))]
def _scaled(value, factor: int):
    """The summary of a made-up TU: every count scaled, so the tokenizer and the model see
    varied numbers around the real summaries' shapes."""
    if isinstance(value, dict):
        return {key: value[key] if key == "version" else _scaled(value[key], factor)
                for key in value}
    if isinstance(value, list):
        return [_scaled(item, factor) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value * factor
    return value


@pytest.fixture(scope="module")
def summaries(clang: str, tmp_path_factory) -> list[dict]:
    """Real summaries of small C files, computed as the compile path computes them."""
    directory = tmp_path_factory.mktemp("sources")
    (directory / "size.h").write_text(SIZE_H)
    found = []
    for name, source in SOURCES.items():
        (directory / name).write_text(source)
        frontend_ir(clang, directory / name, directory / (name + ".bc"))
        found.append(summary.summarize_bitcode(str(directory / (name + ".bc")),
                                               toolchain.llvm_dis_beside(clang)))
    return found


@pytest.fixture(scope="module")
def prompts(summaries: list[dict]) -> list[str]:
    return [summary.to_prompt(s) for s in summaries]


class Trained:
    """The tiny model, its tokenizer, its examples and its GGUF files."""

    def __init__(self, summaries: list[dict], directory: Path) -> None:
        self.prompts = [summary.to_prompt(s) for s in summaries]
        # Each real TU and three made-up variants of it: candidate i % 3 is the smallest, the
        # others a few percent larger, one refused by the symbol rule.
        self.examples = []
        for i, found in enumerate(summaries):
            sizes = [100 if j == i % 3 else 103 + j for j in range(len(CANDIDATES))]
            sizes[(i + 1) % 3 + 3] = None
            weights = candidate_weights(sizes, 110, 0.01)
            self.examples += [(summary.to_prompt(_scaled(found, factor)), weights)
                              for factor in (1, 2, 3, 7)]
        self.best = [CANDIDATES[i % 3] for i in range(len(summaries))]
        self.tokenizer = PassTokenizer.train([p for p, _ in self.examples] + TRICKY, 600,
                                             CANDIDATES)
        # GQA (kv_heads < heads) so the export's k permutation is checked with its own count.
        self.config = Config(vocab_size=self.tokenizer.vocab_size, context=1024, dim=64,
                             layers=2, heads=4, kv_heads=2, hidden=128, seed=7)
        self.model = Llama(self.config)
        self.losses = train(self.model, self.tokenizer, self.examples, steps=100, batch_size=8,
                            lr=3e-3)
        self.sha = dataset_sha256(CANDIDATES, self.examples)
        self.command = "python -m llmcc.train.fit --out tiny.gguf --dim 64 --layers 2"
        self.paths = {q: str(directory / f"tiny-{q}.gguf") for q in ("F32", "Q8_0")}
        for quantization, path in self.paths.items():
            export(self.model, self.tokenizer, path, dataset_sha256=self.sha,
                   command=self.command, quantization=quantization)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two torch threads on two cores shared with the rest of a test run are many times slower
    than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(summaries: list[dict], tmp_path_factory) -> Trained:
    return Trained(summaries, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def runtimes(trained: Trained):
    loaded = {q: ModelRuntime(path) for q, path in trained.paths.items()}
    yield loaded
    for runtime in loaded.values():
        runtime.close()


def test_training_lowers_the_loss(trained: Trained):
    assert trained.losses[-1] < trained.losses[0] / 2


def test_llama_cpp_splits_prompts_into_the_training_tokenizers_tokens(trained: Trained,
                                                                     runtimes: dict):
    runtime = runtimes["Q8_0"]
    for text in [*trained.prompts, *TRICKY]:
        assert runtime.tokenize(text) == trained.tokenizer.encode(text), text
    # What a server reads: the prompt with BOS and ANSWER written out (prompts write no "<|").
    for prompt in trained.prompts:
        assert runtime.tokenize(prompt_text(prompt), special=True) == \
            trained.tokenizer.prompt_ids(prompt)


def test_every_candidate_is_one_answer_token_with_its_list_in_the_metadata(trained: Trained,
                                                                          runtimes: dict):
    first = trained.tokenizer.first_list
    for path, runtime in zip(trained.paths.values(), runtimes.values(), strict=True):
        assert runtime.lists == {list_token(i): c for i, c in enumerate(CANDIDATES)}
        read = gguf_strings(path, (KEY_CANDIDATES, KEY_SUMMARY_VERSION))
        assert lists_by_token(read[KEY_CANDIDATES]) == runtime.lists
        assert read[KEY_SUMMARY_VERSION] == str(summary.SUMMARY_VERSION)
        assert [runtime.pieces[first + i] for i in range(len(CANDIDATES))] == \
            [list_token(i) for i in range(len(CANDIDATES))]
        assert runtime.pieces[trained.tokenizer.none] == NONE
    assert lists_by_token('["always-inline gvn", "no-such-pass", 3]') == {
        list_token(0): ("always-inline", "gvn")}
    assert lists_by_token("not json") == {} and lists_by_token(None) == {}
    assert lists_by_token('["always-inline gvn", "dce", "always-inline gvn"]') == {
        list_token(0): parse("gvn"), list_token(1): parse("dce")}  # the repeat is left out


def test_gguf_metadata_is_read_without_llama_cpp_and_damage_reads_as_nothing(trained: Trained,
                                                                             tmp_path: Path):
    path = trained.paths["Q8_0"]
    assert gguf_strings(path, (KEY_COMMAND,)) == {KEY_COMMAND: trained.command}
    assert gguf_strings(path, (KEY_COMMAND, "no.such.key")) == {KEY_COMMAND: trained.command}
    blob = Path(path).read_bytes()
    for damaged in (blob[:4], blob[:200], b"GGUF" + b"\xff" * 64, b"not a model"):
        (tmp_path / "bad.gguf").write_bytes(damaged)
        assert gguf_strings(str(tmp_path / "bad.gguf"), (KEY_CANDIDATES,)) == {}
    assert gguf_strings(str(tmp_path / "absent.gguf"), (KEY_CANDIDATES,)) == {}


def test_llama_cpp_log_probabilities_match_pytorch_for_an_f32_export(trained: Trained,
                                                                     runtimes: dict):
    import numpy as np

    for prompt in trained.prompts:
        expected = next_logprobs(trained.model, trained.tokenizer.prompt_ids(prompt)).numpy()
        got = runtimes["F32"].logprobs(prompt_text(prompt))
        assert np.abs(expected - got).max() < 0.02


def test_both_exports_rank_as_pytorch_and_as_trained(trained: Trained, runtimes: dict):
    first, count = trained.tokenizer.first_list, len(CANDIDATES)
    for prompt, best in zip(trained.prompts, trained.best, strict=True):
        logprobs = next_logprobs(trained.model, trained.tokenizer.prompt_ids(prompt))
        expected = [CANDIDATES[i] for i in logprobs[first:first + count].argsort(
            descending=True).tolist()]
        assert expected[0] == best
        for runtime in runtimes.values():
            assert runtime.rank(prompt, 1) == [best]
            assert runtime.rank(prompt, 3)[:2] == expected[:2]


def test_ranking_returns_only_distinct_valid_candidates_best_first(trained: Trained,
                                                                   runtimes: dict):
    runtime = runtimes["Q8_0"]
    for prompt in trained.prompts:
        for k in (0, 1, 3, len(CANDIDATES), len(CANDIDATES) + 5):
            ranked = runtime.rank(prompt, k)
            # at most k, and only lists among the likeliest tokens (of the trained ones, 3+)
            assert min(k, 3) <= len(ranked) <= k and len(set(ranked)) == len(ranked)
            assert all(c in CANDIDATES for c in ranked)
    top = [("gvn", -0.1), (list_token(1), -0.5), ("<|L99|>", -0.2), (list_token(1), -0.6),
           (list_token(0), -0.3)]
    assert answers(top, 5, runtime.lists) == [CANDIDATES[0], CANDIDATES[1]]


def test_asking_twice_gives_the_same_answer(trained: Trained, runtimes: dict):
    """The KV cache is cleared between prompts."""
    runtime = runtimes["Q8_0"]
    first = runtime.top(prompt_text(trained.prompts[0]), 8)
    runtime.top(prompt_text(trained.prompts[1]), 8)
    again = runtime.top(prompt_text(trained.prompts[0]), 8)
    assert [t for t, _ in again] == [t for t, _ in first]
    assert [lp for _, lp in again] == pytest.approx([lp for _, lp in first], abs=1e-4)


def test_gguf_metadata_records_config_dataset_and_command(trained: Trained, runtimes: dict):
    import gguf

    metadata = read_metadata(trained.paths["Q8_0"])
    assert json.loads(metadata[KEY_CONFIG]) == trained.config.to_dict()
    assert metadata[KEY_DATASET] == trained.sha
    assert metadata[KEY_COMMAND] == trained.command
    assert metadata[KEY_SUMMARY_VERSION] == str(summary.SUMMARY_VERSION)
    assert metadata[gguf.Keys.General.ARCHITECTURE] == "llama"
    assert metadata[gguf.Keys.Tokenizer.MODEL] == GGUF_MODEL
    assert metadata[gguf.Keys.Tokenizer.PRE] == GGUF_PRE
    assert metadata[gguf.Keys.General.FILE_TYPE] == gguf.LlamaFileType.MOSTLY_Q8_0
    for key in (KEY_CONFIG, KEY_DATASET, KEY_COMMAND, KEY_SUMMARY_VERSION):
        assert runtimes["Q8_0"].metadata[key] == metadata[key]
    # The same examples in the same order give the same hash; anything else does not.
    assert dataset_sha256(CANDIDATES, list(trained.examples)) == trained.sha
    assert dataset_sha256(CANDIDATES, trained.examples[::-1]) != trained.sha
    assert dataset_sha256(CANDIDATES[::-1], trained.examples) != trained.sha


def test_q8_0_stores_matrices_in_8_bits_and_norms_in_f32(trained: Trained):
    import gguf

    reader = gguf.GGUFReader(trained.paths["Q8_0"])
    types = {tensor.name: tensor.tensor_type for tensor in reader.tensors}
    assert types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.1.ffn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert "output.weight" not in types  # tied: llama.cpp reuses the embedding
    sizes = {q: os.path.getsize(path) for q, path in trained.paths.items()}
    assert sizes["Q8_0"] < sizes["F32"] / 3


def test_default_model_exports_under_20_mb(tmp_path: Path, prompts: list[str]):
    tokenizer = PassTokenizer.train(prompts, 2048, CANDIDATES)
    model = Llama(Config(vocab_size=tokenizer.vocab_size))
    path = export(model, tokenizer, str(tmp_path / "default.gguf"), dataset_sha256="0",
                  command="test")
    assert os.path.getsize(path) <= 20 * 1024 * 1024


def test_model_weights_depend_only_on_the_config_and_its_seed():
    config = Config(vocab_size=300, dim=32, layers=1, heads=2, kv_heads=2, hidden=64)
    torch.manual_seed(123)
    first = Llama(config).state_dict()
    torch.manual_seed(456)
    again = Llama(config).state_dict()
    other = Llama(Config(**{**config.to_dict(), "seed": 1})).state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(first["embedding.weight"], other["embedding.weight"])


def test_a_model_for_another_summary_version_is_refused(trained: Trained, tmp_path: Path,
                                                        monkeypatch):
    monkeypatch.setattr(export_module, "SUMMARY_VERSION", summary.SUMMARY_VERSION + 1)
    path = export(trained.model, trained.tokenizer, str(tmp_path / "old.gguf"),
                  dataset_sha256="0", command="test")
    with pytest.raises(ModelError, match="summary version"):
        ModelRuntime(path)


def test_a_missing_model_or_an_overlong_prompt_is_a_model_error(trained: Trained,
                                                                 runtimes: dict,
                                                                 tmp_path: Path):
    with pytest.raises(ModelError, match="does not exist"):
        ModelRuntime(str(tmp_path / "absent.gguf"))
    with pytest.raises(ModelError, match="context"):
        runtimes["Q8_0"].rank(" 1" * 2000, 3)


@pytest.mark.parametrize("module", ["llmcc.advisor.model_runtime", "llmcc.advisor.client"])
def test_importing_what_a_compile_imports_loads_no_model_library(module: str):
    """The hot path stays light: llama_cpp and numpy come with a loaded model, psutil and
    subprocess only to start or stop a server."""
    code = (f"import sys, {module}; print(sorted(m for m in ('llama_cpp', 'numpy', 'torch', "
            "'psutil', 'subprocess') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def test_candidate_weights_follow_sizes_and_teach_none_where_nothing_improves():
    weights = candidate_weights([100, 101, None, 110], 105, 0.01)
    assert weights[0] > weights[1] > weights[3] > 0 and weights[2] == 0
    assert weights[4] == 0  # NONE, last
    assert sum(weights) == pytest.approx(1, abs=1e-5)
    assert candidate_weights([105, 107, None], 105, 0.01) == (0, 0, 0, 1)  # -Oz is as good
    assert candidate_weights([None, None], 105, 0.01) == (0, 0, 1)
    assert candidate_weights([1, 2], 0, 0.01) is None  # an empty object: nothing to learn


REGISTRY = {"lists": ["gvn", "always-inline gvn", "dce"], "broadcast": [1, 2]}


def fit_arguments(summaries: list[dict], directory: Path) -> list[str]:
    """A dataset in `directory` (the train rows: the real summaries, list 1 best on the odd
    ones; one row where nothing beats -Oz; one test row) and the arguments that train a tiny
    model on it, to `directory`/m.gguf."""
    from llmcc.train import labelled

    labelled.write_lists(str(directory), REGISTRY)
    rows = {}
    for i, found in enumerate(summaries):
        broadcast = {"0": 80, "1": 90 if i % 2 else 110, "2": 95}
        rows[f"tu{i}"] = {"tu": f"tu{i}", "split": "train", "baseline": 100,
                          "broadcast": broadcast, "summary": found}
    rows["other"] = {**rows["tu0"], "tu": "other", "split": "test"}
    rows["none"] = {**rows["tu1"], "tu": "none", "broadcast": {"1": 100, "2": None}}
    labelled.write_package(str(directory), "pkg", rows)
    return ["--dataset", str(directory), "--out", str(directory / "m.gguf"), "--vocab-size",
            "400", "--context", "1024", "--dim", "32", "--layers", "1", "--heads", "2",
            "--kv-heads", "1", "--hidden", "64", "--steps", "3", "--batch-size", "2",
            "--threads", "1"]


def test_fit_command_trains_on_the_dataset_and_records_itself(summaries: list[dict],
                                                              tmp_path: Path, capsys):
    from llmcc.train import labelled
    from llmcc.train.fit import candidates_of, coverage_table, examples_from_rows, main

    registry = REGISTRY
    args = fit_arguments(summaries, tmp_path)
    assert main(args) == 0
    count = len(summaries) + 1
    assert f"{count} examples, 3 steps" in capsys.readouterr().err
    epochs = [str(tmp_path / "e.gguf") if a == str(tmp_path / "m.gguf") else a
              for a in args if a not in ("--steps", "3")] + ["--epochs", "2"]
    assert main(epochs) == 0  # 2 passes over the examples in batches of 2
    assert f"{count} examples, {round(2 * count / 2)} steps" in capsys.readouterr().err
    examples = examples_from_rows(labelled.read_all(str(tmp_path)), registry)
    # train rows only, the one where nothing beats -Oz teaching NONE; list 0 not a candidate
    assert len(examples) == len(summaries) + 1
    assert sorted(w[2] for _, w in examples) == [0.0] * len(summaries) + [1.0]
    odd = sum(i % 2 for i in range(len(summaries)))  # list 1 best: 90 against 95
    assert sum(w[0] > w[1] for _, w in examples if w[2] == 0) == odd
    rows_read = labelled.read_all(str(tmp_path))
    assert examples_from_rows(rows_read, registry, none_weight=0) == \
        [example for example in examples if example[1][2] == 0]
    assert sorted(w[2] for _, w in examples_from_rows(rows_read, registry, none_weight=0.5)) \
        == [0.0] * len(summaries) + [0.5]
    metadata = read_metadata(str(tmp_path / "m.gguf"))
    candidates = candidates_of(registry)
    assert candidates == [parse("always-inline gvn"), parse("dce")]
    # coverage: list 2 ("dce") saves log(100/95) on every teaching TU, whichever list teaches;
    # list 1 saves log(100/90) on the odd TUs (which mostly teach it) and nothing on the even
    coverage = json.loads(metadata[KEY_COVERAGE])
    assert coverage == coverage_table(labelled.read_all(str(tmp_path)), registry)
    assert coverage[0][1] == coverage[1][1] == round(COVERAGE_SCALE * math.log(100 / 95))
    assert coverage[1][0] < coverage[0][0] < round(COVERAGE_SCALE * math.log(100 / 90))
    assert metadata[KEY_DATASET] == dataset_sha256(candidates, examples, coverage)
    assert metadata[KEY_COMMAND] == "python -m llmcc.train.fit " + " ".join(args)
    with ModelRuntime(str(tmp_path / "m.gguf")) as runtime:
        assert set(runtime.lists.values()) == set(candidates)
        assert runtime.coverage == [[v / COVERAGE_SCALE for v in row] for row in coverage]
        assert set(runtime.rank(examples[0][0], 5)) == set(candidates)


def test_an_ensemble_answers_its_members_mean_and_refuses_any_other_member(
        summaries: list[dict], trained: Trained, tmp_path: Path, capsys):
    import numpy as np

    from llmcc.advisor.model import file_digest
    from llmcc.train.fit import main

    args = fit_arguments(summaries, tmp_path)
    assert main([*args, "--members", "3", "--seed", "5"]) == 0
    assert "member 3 of 3" in capsys.readouterr().err
    head, *others = (str(tmp_path / name) for name in ("m.gguf", "m-1.gguf", "m-2.gguf"))
    metadata = read_metadata(head)
    assert json.loads(metadata[KEY_MEMBERS]) == [
        ["m-1.gguf", file_digest(others[0], None)], ["m-2.gguf", file_digest(others[1], None)]]
    assert [json.loads(read_metadata(p)[KEY_CONFIG])["seed"] for p in (head, *others)] == \
        [5, 6, 7]
    assert KEY_MEMBERS not in read_metadata(others[0])
    singles = [ModelRuntime(p, ensemble=False) for p in (head, *others)]
    with ModelRuntime(head) as ensemble:
        assert len(ensemble.members) == 2
        for found in summaries:
            text = prompt_text(summary.to_prompt(found))
            mean = sum(single.logprobs(text) for single in singles) / 3
            expected = mean - np.log(np.exp(mean).sum())
            assert np.abs(ensemble.logprobs(text) - expected).max() < 1e-9
            assert not np.allclose(singles[0].logprobs(text), expected, atol=1e-3)
    for single in singles:
        single.close()

    def refused(members: list, match: str) -> None:
        path = export(trained.model, trained.tokenizer, str(tmp_path / "head.gguf"),
                      dataset_sha256="0", command="test", members=members)
        with pytest.raises(ModelError, match=match):
            ModelRuntime(path)

    tiny = os.path.basename(trained.paths["Q8_0"])
    shutil.copy(trained.paths["Q8_0"], tmp_path / tiny)
    refused([["m-1.gguf", file_digest(others[0], None)]], "other tokens or lists")
    refused([[tiny, "0" * 32]], "is not the ensemble member")
    refused([["gone.gguf", "0" * 32]], "No such file")
    refused([["../" + tiny, file_digest(trained.paths["Q8_0"], None)]], "malformed")
    refused("m-1.gguf", "malformed")


A, B, C = (parse(text) for text in ("always-inline gvn", "always-inline sroa<modify-cfg>",
                                    "always-inline dce"))
LISTS = {list_token(0): A, list_token(1): B, list_token(2): C}


def test_coverage_answers_a_list_that_saves_where_the_likeliest_do_not():
    """TUs like those A teaches and those B teaches gain nearly as much from either, and
    nothing from C; C alone saves on TUs like those C teaches."""
    coverage = [[0.10, 0.09, 0.0], [0.09, 0.10, 0.0], [0.0, 0.0, 0.10]]
    top = [(list_token(0), -0.5), (list_token(1), -0.6), (list_token(2), -1.5)]
    assert answers(top, 2, LISTS) == [A, B]  # by likelihood: B repeats A's saving
    assert answers(top, 2, LISTS, coverage) == [A, C]
    assert answers(top, 3, LISTS, coverage) == [A, C, B]
    # k = 1, the expected saving decides: B saves on A's TUs, A nothing on B's
    coverage = [[0.10, 0.09, 0.0], [0.0, 0.10, 0.0], [0.0, 0.0, 0.10]]
    top = [(list_token(0), -0.5), (list_token(1), -0.55)]
    assert answers(top, 1, LISTS) == [A]
    assert answers(top, 1, LISTS, coverage) == [B]
    # a list outside the likeliest tokens can be answered; none twice, none unknown
    assert answers([(list_token(0), -0.1), ("gvn", -0.2)], 3, LISTS, coverage) == [A, B, C]
    assert answers([("gvn", -0.2)], 3, LISTS, coverage) == []


def test_answer_weights_share_the_probability_among_the_lists_and_none():
    top = [(list_token(1), math.log(0.3)), ("gvn", math.log(0.2)), (NONE, math.log(0.1)),
           (list_token(0), math.log(0.4)), (list_token(1), math.log(0.01))]
    weights = answer_weights(top, LISTS)
    assert list(weights) == [0, 1]  # likeliest first; text tokens and a repeat dropped
    assert weights[0] == pytest.approx(0.4 / 0.8) and weights[1] == pytest.approx(0.3 / 0.8)
    assert answer_weights([(NONE, -0.1), ("gvn", -0.2)], LISTS) == {}


def test_a_tu_like_those_nothing_improved_is_answered_with_fewer_lists_by_min_gain():
    coverage = [[0.10, 0.09, 0.0], [0.09, 0.10, 0.0], [0.0, 0.0, 0.10]]
    nothing = [(NONE, -0.05), (list_token(0), -3.0), (list_token(2), -4.0)]
    assert answers(nothing, 2, LISTS, coverage) == [A, C]  # without min_gain: k lists
    assert answers(nothing, 2, LISTS, coverage, min_gain=0.01) == []
    # like A's TUs: A is worth trying; B repeats it, C saves where the TU is not like
    likely_a = [(list_token(0), -0.01), (list_token(1), -5.0), (list_token(2), -6.0)]
    assert answers(likely_a, 3, LISTS, coverage, min_gain=0.001) == [A]
    assert answers(likely_a, 3, LISTS, coverage) == [A, C, B]
    assert answers(likely_a, 3, LISTS, None, min_gain=0.5) == [A, B, C]  # no table: k likeliest


@pytest.mark.parametrize("text", [
    None, "not json", "3", "[]", "[[1, 2], [3, 4]]",                 # absent, not a 3 x 3
    "[[1, 2, 3], [4, 5, 6], [7, 8]]", "[[1, 2, 3], [4, 5, 6], [7, 8, -9]]",
    "[[1, 2, 3], [4, 5, 6], [7, 8, 9.5]]", "[[1, 2, 3], [4, 5, 6], [7, 8, true]]"])
def test_malformed_coverage_is_not_used(text):
    assert coverage_of(text, LISTS) is None
    assert coverage_of("[[1, 2, 3], [4, 5, 6], [7, 8, 9]]", LISTS)[2] == [
        v / COVERAGE_SCALE for v in (7, 8, 9)]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=400), k=st.integers(min_value=0, max_value=12))
def test_any_prompt_is_answered_with_valid_candidate_lists_only(runtimes: dict, text: str,
                                                                k: int):
    """Whatever the prompt (any text, special-token spellings, nothing at all), the answers
    are distinct lists of the model's own, each valid in the vocabulary, at most k."""
    from llmcc.passes import validate

    for runtime in runtimes.values():
        ranked = runtime.rank(text, k)
        assert len(ranked) <= k and len(set(ranked)) == len(ranked)
        assert all(passes in CANDIDATES and validate(passes) == passes for passes in ranked)

"""llmcc's own model, end to end in seconds: a tiny llama trained on real TU summaries, exported
to GGUF, and read back by llama.cpp, which must split prompts into the same tokens and score
candidate pass lists as PyTorch does."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REASON = "needs the train extra (pip install -e '.[train]'): torch, tokenizers, gguf"
torch = pytest.importorskip("torch", reason=REASON)
pytest.importorskip("tokenizers", reason=REASON)
pytest.importorskip("gguf", reason=REASON)

from conftest import SIZE_C, SIZE_H, frontend_ir

from llmcc import summary
from llmcc.advisor.model_runtime import (
    KEY_COMMAND,
    KEY_CONFIG,
    KEY_DATASET,
    KEY_SUMMARY_VERSION,
    ModelError,
    ModelRuntime,
)
from llmcc.passes import OZ_PIPELINE, VOCABULARY, random_list, validate
from llmcc.train import export as export_module
from llmcc.train.export import export, read_metadata
from llmcc.train.fit import dataset_sha256, train
from llmcc.train.model import Config, Llama, score
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

# Text llama.cpp and the training tokenizer must split alike: pass names and special tokens
# written as plain text (never the pass or special tokens), digits, runs of spaces, newlines,
# tabs, punctuation and non-ASCII.
TRICKY = [
    "gvn sroa<modify-cfg> always-inline <|end|><|answer|>",
    "  two  spaces\tand tab\n\nnewlines 123456789 x=-1.5e10; a->b[3]",
    "libraries: __builtin_memcpy, _ZN4core3fmt5write17h1234abcdE, strnlen_s",
    "é ü 日本語 emoji 🙂",
]
LISTS = [OZ_PIPELINE, validate(["sroa<modify-cfg>", "instcombine<no-verify-fixpoint>", "gvn"]),
         validate(["mem2reg", "simplifycfg", "tailcallelim", "dce"])]


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
                                               summary.llvm_dis_beside(clang)))
    return found


@pytest.fixture(scope="module")
def prompts(summaries: list[dict]) -> list[str]:
    return [summary.to_prompt(s) for s in summaries]


class Trained:
    """The tiny model, its tokenizer, its examples and its GGUF files."""

    def __init__(self, summaries: list[dict], directory: Path) -> None:
        self.prompts = [summary.to_prompt(s) for s in summaries]
        # Each real TU and three made-up variants of it answer with the same list.
        self.examples = [(summary.to_prompt(_scaled(s, factor)), LISTS[i % len(LISTS)])
                         for i, s in enumerate(summaries) for factor in (1, 2, 3, 7)]
        self.tokenizer = PassTokenizer.train([p for p, _ in self.examples] + TRICKY, 600)
        # GQA (kv_heads < heads) so the export's k permutation is checked with its own count.
        self.config = Config(vocab_size=self.tokenizer.vocab_size, context=1024, dim=64,
                             layers=2, heads=4, kv_heads=2, hidden=128, seed=7)
        self.model = Llama(self.config)
        self.losses = train(self.model, self.tokenizer, self.examples, steps=40, batch_size=4,
                            lr=1e-2)
        self.sha = dataset_sha256(self.examples)
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


def _candidates(seed: int) -> list[tuple[str, ...]]:
    rng = random.Random(seed)
    return [*LISTS, *(random_list(rng) for _ in range(5))]


def test_training_lowers_the_loss(trained: Trained):
    assert trained.losses[-1] < trained.losses[0] / 2


def test_llama_cpp_splits_prompts_into_the_training_tokenizers_tokens(trained: Trained,
                                                                     runtimes: dict):
    runtime = runtimes["Q8_0"]
    for text in [*trained.prompts, *TRICKY]:
        assert runtime.tokenize(text) == trained.tokenizer.encode(text), text
        assert runtime.prompt_ids(text) == trained.tokenizer.prompt_ids(text)


def test_every_pass_is_one_token_of_its_own_in_both(trained: Trained, runtimes: dict):
    runtime = runtimes["Q8_0"]
    assert set(runtime.pass_ids) == set(VOCABULARY)
    assert runtime.pass_ids == trained.tokenizer.pass_ids
    for passes in _candidates(1):
        assert runtime.answer_ids(passes) == trained.tokenizer.answer_ids(passes)
        assert trained.tokenizer.decode_answer(trained.tokenizer.answer_ids(passes)) == passes


def _pytorch_scores(trained: Trained, prompt: str, candidates) -> list[float]:
    tokenizer = trained.tokenizer
    return [score(trained.model, tokenizer.prompt_ids(prompt), tokenizer.answer_ids(c))
            for c in candidates]


def test_llama_cpp_scores_match_pytorch_for_an_f32_export(trained: Trained, runtimes: dict):
    candidates = _candidates(2)
    lengths = [len(trained.tokenizer.answer_ids(c)) for c in candidates]
    for prompt in trained.prompts:
        expected = _pytorch_scores(trained, prompt, candidates)
        got = runtimes["F32"].score(prompt, candidates)
        for want, have, length in zip(expected, got, lengths, strict=True):
            assert abs(want - have) / length < 0.05, (want, have)


def test_q8_0_export_ranks_the_same_list_first_as_pytorch(trained: Trained, runtimes: dict):
    candidates = _candidates(3)
    for prompt in trained.prompts:
        expected = _pytorch_scores(trained, prompt, candidates)
        best = max(range(len(candidates)), key=expected.__getitem__)
        assert runtimes["Q8_0"].rank(prompt, candidates, 1) == [candidates[best]]


def test_ranking_returns_only_given_candidates_best_first(trained: Trained, runtimes: dict):
    runtime = runtimes["Q8_0"]
    prompt = trained.prompts[0]
    unknown = ("always-inline", "no-such-pass")
    for seed in range(3):
        candidates = [*_candidates(seed), unknown]
        scores = dict(zip(candidates, runtime.score(prompt, candidates), strict=True))
        for k in (0, 1, 3, len(candidates) + 2):
            ranked = runtime.rank(prompt, candidates, k)
            assert len(ranked) == min(k, len(candidates))
            assert all(c in candidates for c in ranked)
            assert [scores[c] for c in ranked] == sorted((scores[c] for c in ranked),
                                                         reverse=True)
        assert scores[unknown] == float("-inf")
        assert runtime.rank(prompt, candidates, len(candidates))[-1] == unknown


def test_scoring_twice_gives_the_same_scores(trained: Trained, runtimes: dict):
    """The KV cache is rewound to the prompt between candidates and cleared between prompts."""
    runtime = runtimes["Q8_0"]
    candidates = _candidates(4)
    first = runtime.score(trained.prompts[0], candidates)
    runtime.score(trained.prompts[1], candidates[::-1])
    assert runtime.score(trained.prompts[0], candidates) == pytest.approx(first, abs=1e-4)
    alone = [runtime.score(trained.prompts[0], [c])[0] for c in candidates]
    assert alone == pytest.approx(first, abs=1e-4)


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
    assert dataset_sha256(list(trained.examples)) == trained.sha
    assert dataset_sha256(trained.examples[::-1]) != trained.sha


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
    tokenizer = PassTokenizer.train(prompts, 2048)
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
        runtimes["Q8_0"].score(" 1" * 2000, [OZ_PIPELINE])


def test_importing_the_runtime_loads_no_model_library():
    """The hot path stays light: llama_cpp and numpy are imported when a model is loaded."""
    code = ("import sys, llmcc.advisor.model_runtime; "
            "print(sorted(m for m in ('llama_cpp', 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "[]"


def test_fit_command_trains_on_the_dataset_and_records_itself(summaries: list[dict],
                                                              tmp_path: Path):
    from llmcc.train import labelled
    from llmcc.train.fit import examples_from_rows, main

    rows = {}
    for i, found in enumerate(summaries):
        search = {"passes": "always-inline gvn", "size": 90 if i % 2 else 110}
        rows[f"tu{i}"] = {"tu": f"tu{i}", "split": "train", "baseline": 100, "search": search,
                          "summary": found}
    rows["other"] = {**rows["tu0"], "tu": "other", "split": "test"}
    labelled.write_package(str(tmp_path), "pkg", rows)
    args = ["--dataset", str(tmp_path), "--out", str(tmp_path / "m.gguf"), "--vocab-size",
            "400", "--context", "1024", "--dim", "32", "--layers", "1", "--heads", "2",
            "--kv-heads", "1", "--hidden", "64", "--steps", "3", "--batch-size", "2",
            "--threads", "1"]
    assert main(args) == 0
    examples = examples_from_rows(labelled.read_all(str(tmp_path)))
    assert [passes for _, passes in examples] == [OZ_PIPELINE, ("always-inline", "gvn")] * 2
    metadata = read_metadata(str(tmp_path / "m.gguf"))
    assert metadata[KEY_DATASET] == dataset_sha256(examples)
    assert metadata[KEY_COMMAND] == "python -m llmcc.train.fit " + " ".join(args)
    with ModelRuntime(str(tmp_path / "m.gguf")) as runtime:
        assert runtime.rank(examples[0][0], [OZ_PIPELINE], 1) == [OZ_PIPELINE]

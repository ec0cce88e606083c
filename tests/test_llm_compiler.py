"""LLMCC_PROMPT=llm-compiler: Meta's prompt, an LLM Compiler-style answer read into llmcc's pass
vocabulary, and, end to end, `llmcc` asking tiny models trained here to answer in text (real
llama.cpp, clang and opt): the answer's list tried in-process and through the per-user server
alike, a TU beyond the model's context advised by llmcc's own model, and an answer without a
pass, or no own model for a large TU, ending in one warning, the popular lists and no cache."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    SIZE_C,
    SIZE_H,
    frontend_ir,
    log_events,
    model_servers_under,
    object_size,
    run,
)

from llmcc import events, summary, toolchain
from llmcc.advisor import llm_compiler
from llmcc.advisor.model_runtime import ModelRuntime
from llmcc.passes import VOCABULARY, parse, to_text


@pytest.mark.parametrize("answer, expected", [
    (("Run passes `-p 'module(default<Oz>),function(gvn,instcombine<no-verify-fixpoint>)'` "
      "to reduce the object size"), "default<Oz> gvn instcombine<no-verify-fixpoint>"),
    ("-reg2mem -instcombine -gvn -simplifycfg -mem2reg",
     "instcombine<no-verify-fixpoint> gvn simplifycfg mem2reg"),
    ("opt -p 'cgscc(inline),function(sroa<modify-cfg>,loop(loop-deletion))'",
     "inline sroa<modify-cfg> loop-deletion"),
    ("-p 'function(dce)'\n\n<code>define i32 @f() {\n  %gvn = add i32 1, 2\n  ret i32 0\n}</code>",
     "dce"),  # the forecast IR after the list is not read
])
def test_answers_are_read_into_the_vocabulary(answer, expected):
    assert llm_compiler.passes_of_answer(answer) == parse(expected)


@pytest.mark.parametrize("answer", [
    "", "I cannot help with that.", "-p 'module(internalize,strip)' $(touch pwned) -load=x.so",
])
def test_answers_without_a_vocabulary_pass_give_nothing(answer):
    assert llm_compiler.passes_of_answer(answer) is None


def test_parameterless_names_map_only_to_a_unique_vocabulary_entry():
    assert llm_compiler.BY_BASE_NAME["sroa"] == "sroa<modify-cfg>"
    assert "loop-rotate" not in llm_compiler.BY_BASE_NAME  # two entries: left out
    assert set(llm_compiler.BY_BASE_NAME.values()) <= set(VOCABULARY)


def test_prompt_is_metas_format_to_the_character():
    assert llm_compiler.prompt("define void @f() {\n  ret void\n}\n") == (
        "[INST] Tell me how to optimize this LLVM-IR for object file size:\n\n<code>define void "
        "@f() {\n  ret void\n}\n</code> [/INST]")


def test_the_prompt_names_the_module_after_its_source_not_the_file_llvm_dis_read():
    """llvm-dis names the module after the bitcode it read, a compile's temporary tu.bc: the
    prompt, hence the answer, must not change from one compile of the TU to the next."""
    ir = "; ModuleID = '{}'\nsource_filename = \"src/size.c\"\n\ndefine void @f() {{\n}}\n"
    prompts = {llm_compiler.prompt(ir.format(path))
               for path in ("/tmp/llmcc-1a2b3c/tu.bc", "/tmp/llmcc-x_y-z9/tu.bc", "src/size.c")}
    assert prompts == {llm_compiler.prompt(ir.format("src/size.c"))}
    assert "<code>; ModuleID = 'src/size.c'\nsource_filename" in prompts.pop()


# --- end to end: tiny models that answer in text, real llama.cpp, clang and opt --------------

REASON = "needs the train extra (pip install -e '.[train]'): torch, tokenizers, gguf"
# Meta's answer format: the pipeline, then the forecast IR, which llmcc does not read.
PASSES_ANSWER = ("Run passes `-p 'module(default<Oz>),function(gvn,dce)'` to reduce the object "
                 "size\n\n<code>...</code>")
PASSES = "always-inline default<Oz> gvn dce"
PROSE_ANSWER = "I cannot help with that."
TRAINED_ON = ("size.c", "math.c", "table.c")
# llmcc's own model for a TU beyond the text model's context: lists no popular list holds
OWN_LISTS = ["always-inline mem2reg sroa<modify-cfg> gvn",
             "always-inline sroa<modify-cfg> instcombine<no-verify-fixpoint> simplifycfg",
             "always-inline mem2reg dce"]
TEXT_CONTEXT = 4096  # the trained prompts (~3000 tokens) and an answer; big.c is ~16000


@dataclass(frozen=True)
class TextModels:
    """Meta's prompt of each trained TU, and a GGUF file by the text it was trained to answer."""

    prompts: dict[str, str]
    paths: dict[str, str]


@pytest.fixture(scope="module")
def train_extra():
    """torch on one thread (more, on cores a test run shares, are slower), or a skip."""
    torch = pytest.importorskip("torch", reason=REASON)
    pytest.importorskip("tokenizers", reason=REASON)
    pytest.importorskip("gguf", reason=REASON)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def _answering(tokenizer, prompts: list[str], answer: str, seed: int):
    """A tiny llama that answers `answer` (then END) to each prompt: a plain next-token loss on
    the answer's tokens only, one prompt a step."""
    import torch
    import torch.nn.functional as F

    from llmcc.train.fit import learning_rate
    from llmcc.train.model import Config, Llama

    config = Config(vocab_size=tokenizer.vocab_size, context=TEXT_CONTEXT, dim=32, layers=1,
                    heads=2, kv_heads=1, hidden=64, seed=seed)
    model = Llama(config)
    target = [*tokenizer.encode(answer), tokenizer.end]
    rows = [tokenizer.encode(prompt) + target for prompt in prompts]
    steps, peak = 100, 2e-2
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.95),
                                  weight_decay=0.0)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, peak)
        ids = rows[step % len(rows)]
        hidden = model.hidden(torch.tensor([ids[:-1]]))[0, -len(target):]
        loss = F.cross_entropy(model.logits(hidden), torch.tensor(target))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def text_models(train_extra, clang: str, tmp_path_factory) -> TextModels:
    """Two tiny text models on Meta's prompt of a few small TUs: one answers PASSES_ANSWER, the
    other PROSE_ANSWER; one byte-level BPE tokenizer trained on the prompts and answers."""
    from test_model import SOURCES

    from llmcc.train.export import export
    from llmcc.train.tokenizer import PassTokenizer

    directory = tmp_path_factory.mktemp("text-models")
    (directory / "size.h").write_text(SIZE_H)
    prompts = {}
    for name in TRAINED_ON:
        (directory / name).write_text(SOURCES[name])
        # named as a compile in the source's directory names it: the prompts, and so the
        # trained weights, do not depend on pytest's temporary path (which changes every run)
        frontend_ir(clang, Path(name), directory / (name + ".bc"), cwd=directory)
        prompts[name] = llm_compiler.prompt(summary.disassemble(
            str(directory / (name + ".bc")), toolchain.llvm_dis_beside(clang)))
    answers = [PASSES_ANSWER, PROSE_ANSWER]
    # twice each: BPE merges pairs seen at least twice
    tokenizer = PassTokenizer.train([*prompts.values(), *answers] * 2, 2000, [])
    paths = {}
    for seed, answer in enumerate(answers, start=1):
        model = _answering(tokenizer, list(prompts.values()), answer, seed)
        paths[answer] = export(model, tokenizer, str(directory / f"text-{seed}.gguf"),
                               dataset_sha256="0", command="tests/test_llm_compiler.py",
                               quantization="F32")
    return TextModels(prompts, paths)


def _big_tu(count: int = 24) -> str:
    return "".join(f"int f{i}(const int *v, int n) {{ int s = {i};\n"
                   f"    for (int j = 0; j < n; j++) s += v[j] * {i} ^ j;\n    return s; }}\n"
                   for i in range(count))


@pytest.fixture(scope="module")
def own_model(train_extra, clang: str, tmp_path_factory) -> str:
    """A tiny llmcc model (one token per list of OWN_LISTS) trained on big.c's summary."""
    from llmcc.train.export import export
    from llmcc.train.fit import train
    from llmcc.train.model import Config, Llama
    from llmcc.train.tokenizer import PassTokenizer

    directory = tmp_path_factory.mktemp("own-model")
    (directory / "big.c").write_text(_big_tu())
    frontend_ir(clang, directory / "big.c", directory / "big.bc")
    prompt = summary.to_prompt(summary.summarize_bitcode(str(directory / "big.bc"),
                                                         toolchain.llvm_dis_beside(clang)))
    candidates = [parse(text) for text in OWN_LISTS]
    tokenizer = PassTokenizer.train([prompt] * 2, 400, candidates)
    model = Llama(Config(vocab_size=tokenizer.vocab_size, context=2048, dim=32, layers=1,
                         heads=2, kv_heads=1, hidden=64, seed=3))
    train(model, tokenizer, [(prompt, (0.5, 0.3, 0.2, 0.0))], steps=20, batch_size=1, lr=1e-2)
    return export(model, tokenizer, str(directory / "own.gguf"), dataset_sha256="0",
                  command="tests/test_llm_compiler.py")


@pytest.fixture
def no_own_model(package_copy: Path) -> Path:
    """A private copy of the package without llmcc's own model (advisor/model.gguf)."""
    (package_copy / "advisor" / "model.gguf").unlink(missing_ok=True)
    return package_copy


@pytest.fixture
def runtime_dir(text_models: TextModels, env: dict[str, str], xdg: str) -> str:
    """The per-user servers this test's compiles start live in a directory of its own."""
    env["XDG_RUNTIME_DIR"] = xdg
    return xdg


def digest(path: str | None) -> str:
    """What the advisor's identity names: a model file's content, or `none`."""
    if path is None:
        return "none"
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def with_text_model(env: dict[str, str], path: str, model_server: bool) -> dict[str, str]:
    return {**env, "LLMCC_ADVISOR": "model", "LLMCC_PROMPT": "llm-compiler",
            "LLMCC_MODEL": path, "LLMCC_MODEL_SERVER": str(int(model_server))}


def sources(directory: Path, **files: str) -> Path:
    directory.mkdir()
    (directory / "size.h").write_text(SIZE_H)
    for name, text in files.items():
        (directory / f"{name}.c").write_text(text)
    return directory


def tried(event: dict) -> list[str | None]:
    """The lists a compile tried: clang's own pipeline (None), then the rest by size."""
    return [result["passes"] for result in event["tried"]]


def popular_lists(package: Path, k: int = 3) -> list[str]:
    from llmcc.advisor.popular import PopularAdvisor

    lists = PopularAdvisor.load(str(package / "advisor" / "popular.json")).suggest("", k)
    return sorted(map(to_text, lists))


def test_tiny_text_models_give_their_trained_answer_through_llama_cpp(text_models: TextModels):
    for answer, path in text_models.paths.items():
        with ModelRuntime(path, llmcc_model=False) as runtime:
            assert runtime.n_ctx == TEXT_CONTEXT
            for prompt in text_models.prompts.values():
                assert runtime.generate(prompt, llm_compiler.ANSWER_TOKENS) == answer
    assert to_text(llm_compiler.passes_of_answer(PASSES_ANSWER)) == PASSES
    assert llm_compiler.passes_of_answer(PROSE_ANSWER) is None


def test_the_answers_list_is_tried_in_process_and_through_the_per_user_server_alike(
        text_models: TextModels, tmp_path: Path, env: dict[str, str], no_own_model: Path,
        runtime_dir: str, llmcc: str, clang: str):
    source = sources(tmp_path / "src", size=SIZE_C)
    model = text_models.paths[PASSES_ANSWER]
    plain = run([clang, "-Oz", "-c", "size.c", "-o", "plain.o"], source)
    assert plain.returncode == 0
    objects = {}
    for model_server in (False, True):
        way = {**with_text_model(env, model, model_server),
               "LLMCC_CACHE_DIR": str(tmp_path / f"cache-{model_server}"),
               "LLMCC_LOG": str(tmp_path / f"llmcc-{model_server}.log")}
        done = run([llmcc, "-Oz", "-c", "size.c", "-o", "size.o"], source, way)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
        [event] = log_events(way)
        assert event["outcome"] == events.MISS and "advisor_failure" not in event
        assert event["advisor"] == f"model:{digest(model)}:llm-compiler:none"
        assert tried(event) == [None, PASSES] and event["evaluated"] == 1
        assert bool(model_servers_under(runtime_dir)) == model_server  # a server answered
        objects[model_server] = (source / "size.o").read_bytes()
    assert objects[False] == objects[True]
    assert object_size(objects[False]) <= object_size((source / "plain.o").read_bytes())


@pytest.mark.parametrize("model_server", [False, True], ids=["in-process", "per-user-server"])
def test_a_tu_beyond_the_text_models_context_goes_to_llmccs_own_model(
        text_models: TextModels, own_model: str, tmp_path: Path, env: dict[str, str],
        no_own_model: Path, runtime_dir: str, llmcc: str, model_server: bool):
    shutil.copy(own_model, no_own_model / "advisor" / "model.gguf")
    source = sources(tmp_path / "src", big=_big_tu())
    way = with_text_model(env, text_models.paths[PASSES_ANSWER], model_server)
    for _ in range(2):
        done = run([llmcc, "-Oz", "-c", "big.c", "-o", "big.o"], source, way)
        assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    miss, hit = log_events(way)
    assert miss["advisor"] == (f"model:{digest(text_models.paths[PASSES_ANSWER])}"
                               f":llm-compiler:{digest(own_model)}")
    assert "advisor_failure" not in miss
    assert tried(miss)[0] is None and sorted(tried(miss)[1:]) == sorted(OWN_LISTS)  # all three: LLMCC_CANDIDATES is 3
    assert (miss["outcome"], hit["outcome"]) == (events.MISS, events.DIRECT_HIT)
    # through the server: the text model's refused the prompt, the own model's answered
    assert len(model_servers_under(runtime_dir)) == (2 if model_server else 0)


def assert_warned_popular_and_not_cached(done_twice: list, env: dict[str, str], package: Path,
                                         reason: str) -> None:
    """Two compiles of one TU each warned once (with `reason`), tried the popular lists and
    cached nothing."""
    for done in done_twice:
        assert done.returncode == 0 and done.stdout == b""
        [line] = done.stderr.decode().splitlines()
        assert line.startswith("llmcc: warning: ") and reason in line, line
        assert "did not cache this TU's decision" in line
    first, second = log_events(env)
    assert (first["outcome"], second["outcome"]) == (events.MISS, events.MISS)
    assert tried(first)[0] is None and sorted(tried(first)[1:]) == popular_lists(package)
    assert "tried the popular lists instead" in first["advisor_failure"]


def test_a_tu_beyond_the_context_without_llmccs_own_model_warns_and_is_not_cached(
        text_models: TextModels, tmp_path: Path, env: dict[str, str], no_own_model: Path,
        llmcc: str):
    source = sources(tmp_path / "src", big=_big_tu())
    model = text_models.paths[PASSES_ANSWER]
    way = with_text_model(env, model, False)
    done = [run([llmcc, "-Oz", "-c", "big.c", "-o", "big.o"], source, way) for _ in range(2)]
    assert_warned_popular_and_not_cached(done, way, no_own_model, "context")
    assert log_events(way)[0]["advisor"] == f"model:{digest(model)}:llm-compiler:none"


def test_an_answer_naming_no_vocabulary_pass_warns_and_is_not_cached(
        text_models: TextModels, tmp_path: Path, env: dict[str, str], no_own_model: Path,
        llmcc: str):
    source = sources(tmp_path / "src", size=SIZE_C)
    way = with_text_model(env, text_models.paths[PROSE_ANSWER], False)
    done = [run([llmcc, "-Oz", "-c", "size.c", "-o", "size.o"], source, way) for _ in range(2)]
    assert_warned_popular_and_not_cached(done, way, no_own_model, "answered no pass list")

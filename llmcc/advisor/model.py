"""The `model` advisor: a GGUF model ranks candidate pass lists for each TU.

The TU's summary (llmcc.summary, computed as the dataset computed it) is the prompt (with
LLMCC_PROMPT=llm-compiler, the TU's IR in Meta's LLM Compiler prompt: llm_compiler.py). The model
is asked where that is cheapest: a llama.cpp-compatible server the user names (LLMCC_SERVER),
else the per-user server (started on demand and kept: `import llama_cpp` alone costs more than
a typical compile), else in this process. A way that fails gives one warning and the next is
tried; when none answers, the popular lists are used and the decision is not cached, since it
says nothing about what the model advises.

The identity is the model file's content hash, so a new model changes every cache key and
`llmcc-ctl id`. Hashing a large GGUF on every compile would cost more than a cache hit saves,
so the hash is remembered per file (device, inode, size, mtime), as ccache remembers compilers.
A remote server is assumed to serve the same model: its answers are measured like any list.
"""

from __future__ import annotations

import os

from llmcc.advisor import AdvisorError
from llmcc.files import write_atomic
from llmcc.passes import PassList

DEFAULT_MODEL = os.path.join(os.path.dirname(__file__), "model.gguf")
IN_PROCESS_THREADS = 1  # compiles run in parallel (make -j): one thread each
SERVER_THREADS = 1      # more loses when compiles keep the cores busy: bench/model_speed.py


def model_path(settings) -> str:
    return settings.model or DEFAULT_MODEL


def file_digest(path: str, memo_dir: str | None, what: str = "model file") -> str:
    """blake2b of the file, remembered in `memo_dir` by the file's identity when possible;
    `what` names the file in errors."""
    try:
        stat = os.stat(path)
    except OSError as err:
        raise AdvisorError(f"{what} {path}: {err.strerror}") from None
    memo = None
    if memo_dir:
        memo = os.path.join(memo_dir, f"{stat.st_dev}-{stat.st_ino}-{stat.st_size}-"
                                      f"{stat.st_mtime_ns}")
        try:
            with open(memo) as handle:
                remembered = handle.read().strip()
            if len(remembered) == 32 and all(c in "0123456789abcdef" for c in remembered):
                return remembered
        except OSError:
            pass
    import hashlib  # only when the memo is missing or stale

    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as err:
        raise AdvisorError(f"{what} {path}: {err.strerror}") from None
    if memo:
        try:
            os.makedirs(memo_dir, exist_ok=True)
            write_atomic(memo, digest.hexdigest().encode())
        except OSError:
            pass  # a read-only cache: hash again next time
    return digest.hexdigest()


def digest_memo_dir(settings) -> str | None:
    if not settings.cache:
        return None
    from llmcc.config import cache_dir

    return os.path.join(cache_dir(settings), "model-digests")


def identity(settings, digest: str | None = None) -> str:
    """`model:<digest>` (of the model file, computed unless given); with the llm-compiler prompt
    also the model asked when a TU does not fit that model's context (llmcc's own), as both
    decide."""
    memo = digest_memo_dir(settings)
    own = "model:" + (digest or file_digest(model_path(settings), memo))
    if settings.prompt != "llm-compiler":
        return own
    try:
        fallback = file_digest(DEFAULT_MODEL, memo)
    except AdvisorError:
        fallback = "none"
    return f"{own}:llm-compiler:{fallback}"


class ModelAdvisor:
    """Asks the model. What went wrong reaches the driver as at most one line: a warning when
    another way of asking worked, else `failure` (then the decision is not cached)."""

    def __init__(self, settings, disassemble, fallback) -> None:
        self.settings, self.disassemble, self.fallback = settings, disassemble, fallback
        self.path = model_path(settings)
        self.digest = file_digest(self.path, digest_memo_dir(settings))
        self.identity = identity(settings, self.digest)
        self.warnings: list[str] = []
        self.failure: str | None = None

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        from llmcc.toolchain import StepFailed

        if not k:
            return []
        try:
            ir = self.disassemble(bitcode_path)
        except StepFailed as err:
            return self._popular(k, f"the TU could not be read for the model: {err}")
        if self.settings.prompt == "llm-compiler":
            return self._ask_for_text(ir, k)
        return self._rank(ir, k)

    def _rank(self, ir: str, k: int) -> list[PassList]:
        """llmcc's own kind of model: it ranks its candidate lists for the TU's summary."""
        from llmcc.advisor import client
        from llmcc.advisor.model_runtime import answer_tables, answers, prompt_text, top_count
        from llmcc.summary import SUMMARY_VERSION, summarize_ir, to_prompt

        lists, coverage, version = answer_tables(self.path)
        if not lists:
            return self._popular(k, f"{self.path} holds no candidate pass lists: it is not a "
                                    "model made by llmcc (LLMCC_PROMPT=llm-compiler asks one "
                                    "that answers in text)")
        if version != str(SUMMARY_VERSION):
            return self._popular(k, f"{self.path} was trained on summary version {version}, "
                                    f"llmcc renders version {SUMMARY_VERSION}")
        text, n = prompt_text(to_prompt(summarize_ir(ir))), top_count(k, len(lists))
        chosen, problems = self._ask(
            lambda address, timeout: client.complete_top(address, text, n, timeout),
            lambda runtime: runtime.top(text, n),
            lambda top: answers(top, k, lists, coverage), True)
        return chosen or self._popular(k, f"the model failed ({'; '.join(problems)})")

    def _ask_for_text(self, ir: str, k: int) -> list[PassList]:
        """A model that answers in text (LLMCC_PROMPT=llm-compiler): its one list; a TU
        larger than its context goes to llmcc's own model."""
        from llmcc.advisor import client, llm_compiler

        text, tokens = llm_compiler.prompt(ir), llm_compiler.ANSWER_TOKENS

        def read(answer: str) -> list[PassList]:
            passes = llm_compiler.passes_of_answer(answer)
            return [] if passes is None else [passes]

        chosen, problems = self._ask(
            lambda address, timeout: client.complete_text(address, text, tokens, timeout),
            lambda runtime: runtime.generate(text, tokens), read, False)
        if chosen:
            return chosen
        if problems and all("context" in problem for problem in problems):
            return self._own_model(ir, k)
        return self._popular(k, f"the model failed ({'; '.join(problems)})")

    def _own_model(self, ir: str, k: int) -> list[PassList]:
        from llmcc.config import Settings

        settings = Settings({**self.settings.values, "model": "", "prompt": "llmcc"},
                            self.settings.origins)
        try:
            own = ModelAdvisor(settings, self.disassemble, self.fallback)
        except AdvisorError as err:
            return self._popular(k, f"the TU does not fit {self.path}'s context, and "
                                    f"llmcc's own model cannot be used: {err}")
        chosen = own._rank(ir, k)
        self.warnings, self.failure = own.warnings, own.failure
        return chosen

    def _ask(self, request, local, read, ranks: bool) -> tuple[list[PassList], list[str]]:
        """`read` of the first answer that holds a pass list: from LLMCC_SERVER's server
        (`request(address, timeout)`), the per-user server, or this process
        (`local(runtime)`); and what failed on the way. `ranks`: an llmcc model."""
        from llmcc.advisor import client
        from llmcc.advisor.model_runtime import ModelError, ModelRuntime

        settings = self.settings
        ways = []
        if settings.server:
            ways.append((f"at {settings.server}",
                         lambda: request(settings.server, client.REQUEST_TIMEOUT)))
        if settings.model_server:
            ways.append(("through the per-user server", lambda: client.ask_per_user_server(
                self.path, self.digest, request, threads=SERVER_THREADS,
                gpu_layers=settings.gpu_layers, idle=client.IDLE_SECONDS)))

        def in_process():
            with ModelRuntime(self.path, IN_PROCESS_THREADS, settings.gpu_layers,
                              llmcc_model=ranks) as runtime:
                return local(runtime)

        ways.append(("in this process", in_process))
        problems = []
        for where, ask in ways:
            try:
                chosen = read(ask())
            except ModelError as err:
                problems.append(f"{where}: {err}")
                if "context" in str(err):  # the same model anywhere else: no use asking
                    break
                continue
            if chosen:
                if problems:  # one warning, however many ways failed before
                    self.warnings.append(f"the model failed ({'; '.join(problems)}); "
                                         f"asked it {where} instead")
                return chosen, problems
            problems.append(f"{where}: it answered no pass list")
        return [], problems

    def _popular(self, k: int, reason: str) -> list[PassList]:
        lists, self.failure = self.fallback.instead(k, reason)
        return lists

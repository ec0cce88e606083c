"""The `model` advisor: a GGUF model ranks candidate pass lists for each TU.

The TU's summary (llmcc.summary, computed as the dataset computed it) is the prompt. The model
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

import hashlib
import os

from llmcc.advisor import AdvisorError
from llmcc.files import write_atomic
from llmcc.passes import PassList

DEFAULT_MODEL = os.path.join(os.path.dirname(__file__), "model.gguf")
IN_PROCESS_THREADS = 1  # compiles run in parallel (make -j): one thread each
SERVER_THREADS = 2      # one server serves them all


def model_path(settings) -> str:
    return settings.model or DEFAULT_MODEL


def file_digest(path: str, memo_dir: str | None) -> str:
    """blake2b of the file, remembered in `memo_dir` by the file's identity when possible."""
    try:
        stat = os.stat(path)
    except OSError as err:
        raise AdvisorError(f"model file {path}: {err.strerror}") from None
    memo = None
    if memo_dir:
        memo = os.path.join(memo_dir, f"{stat.st_dev}-{stat.st_ino}-{stat.st_size}-"
                                      f"{stat.st_mtime_ns}")
        try:
            with open(memo) as handle:
                return handle.read().strip()
        except OSError:
            pass
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as err:
        raise AdvisorError(f"model file {path}: {err.strerror}") from None
    if memo:
        try:
            os.makedirs(memo_dir, exist_ok=True)
            write_atomic(memo, digest.hexdigest().encode())
        except OSError:
            pass  # a read-only cache: hash again next time
    return digest.hexdigest()


def _memo_dir(settings) -> str | None:
    if not settings.cache:
        return None
    from llmcc.config import cache_dir

    return os.path.join(cache_dir(settings), "model-digests")


def identity(settings) -> str:
    return "model:" + file_digest(model_path(settings), _memo_dir(settings))


class ModelAdvisor:
    """Asks the model. What went wrong reaches the driver as at most one line: a warning when
    another way of asking worked, else `failure` (then the decision is not cached)."""

    def __init__(self, settings, clang: str | None, fallback) -> None:
        self.settings, self.clang, self.fallback = settings, clang, fallback
        self.path = model_path(settings)
        self.digest = file_digest(self.path, _memo_dir(settings))
        self.identity = "model:" + self.digest
        self.warnings: list[str] = []
        self.failure: str | None = None

    def suggest(self, bitcode_path: str, k: int) -> list[PassList]:
        from llmcc.advisor.model_runtime import (
            KEY_CANDIDATES,
            ModelError,
            answers,
            gguf_string,
            lists_by_token,
            prompt_text,
            top_count,
        )
        from llmcc.summary import llvm_dis_beside, summarize_bitcode, to_prompt
        from llmcc.toolchain import StepFailed

        if not k:
            return []
        lists = lists_by_token(gguf_string(self.path, KEY_CANDIDATES))
        if not lists:
            return self._popular(k, f"{self.path} holds no candidate pass lists: it is not a "
                                    "GGUF model made by llmcc")
        try:
            summary = summarize_bitcode(bitcode_path, llvm_dis_beside(self.clang),
                                        self.settings.timeout)
        except StepFailed as err:
            return self._popular(k, f"the TU could not be summarised for the model: {err}")
        text, n = prompt_text(to_prompt(summary)), top_count(k)
        problems = []
        for where, ask in self._ways():
            try:
                chosen = answers(ask(text, n), k, lists)
            except ModelError as err:
                problems.append(f"{where}: {err}")
                continue
            if chosen:
                if problems:  # one warning, however many ways failed before
                    self.warnings.append(f"the model failed ({'; '.join(problems)}); "
                                         f"asked it {where} instead")
                return chosen
            problems.append(f"{where}: it answered no pass list")
        return self._popular(k, f"the model failed ({'; '.join(problems)})")

    def _ways(self):
        """(where, ask(text, n) -> top tokens), cheapest first."""
        settings = self.settings
        if settings.server or settings.model_server:
            from llmcc.advisor import client
        if settings.server:
            yield (f"at {settings.server}",
                   lambda text, n: client.complete_top(settings.server, text, n,
                                                       client.REQUEST_TIMEOUT))
        if settings.model_server:
            yield ("through the per-user server", lambda text, n: client.ask_per_user_server(
                self.path, self.digest, text, n, threads=SERVER_THREADS,
                gpu_layers=settings.gpu_layers, idle=client.IDLE_SECONDS))
        yield "in this process", self._in_process

    def _in_process(self, text: str, n: int) -> list[tuple[str, float]]:
        from llmcc.advisor.model_runtime import ModelRuntime

        with ModelRuntime(self.path, IN_PROCESS_THREADS, self.settings.gpu_layers) as runtime:
            return runtime.top(text, n)

    def _popular(self, k: int, reason: str) -> list[PassList]:
        self.failure = f"{reason}; tried the popular lists instead"
        return self.fallback.suggest("", k)

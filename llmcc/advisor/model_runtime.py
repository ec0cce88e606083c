"""llmcc's model at compile time: a GGUF llama run by llama.cpp that ranks candidate pass lists.

The model reads a TU summary (llmcc.summary.to_prompt) and answers with a pass list, one token
per pass. A candidate's score is the log-likelihood of its tokens after the prompt: ranking k
candidates evaluates the prompt once and then only each candidate's few tokens, each time
dropping the previous candidate from the KV cache and keeping the prompt's. The END token is
scored too, so a list is judged as a whole answer and a prefix of a good list does not outrank
it.

llama.cpp is driven through llama-cpp-python's bindings of its C API (llama.h), not the `Llama`
class, for one setting that class does not expose: `use_extra_bufts = False`. With it on,
llama.cpp repacks Q8_0 weights for the CPU's matrix extensions, and on CPUs with AMX the first
evaluation then crashes the process (llama.cpp issue 20824; seen on this project's machines).
Repacking a model of a few megabytes gains nothing anyway.

This module is imported only when a model is used, and it imports llama_cpp only when a model is
loaded: a cache hit never pays for either. The sequence format and llmcc's own metadata keys
are defined here, for llmcc.train to write what this module reads:

    BOS <prompt text> ANSWER <pass> <pass> ... END
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
from collections.abc import Sequence
from typing import Self

from llmcc.advisor import AdvisorError
from llmcc.passes import PassList

BOS, ANSWER, END = "<|bos|>", "<|answer|>", "<|end|>"

# llmcc's keys in the GGUF metadata (the standard ones are gguf.Keys); values are strings.
KEY_CONFIG = "llmcc.config"                    # the model's Config as JSON
KEY_DATASET = "llmcc.dataset_sha256"           # hash of the (prompt, answer) examples trained on
KEY_COMMAND = "llmcc.train_command"            # the command line that trained the model
KEY_SUMMARY_VERSION = "llmcc.summary_version"  # prompts must be rendered by this version

BATCH = 512  # tokens per llama_decode call: a longer prompt is evaluated in several


class ModelError(AdvisorError):
    """The model cannot be used: missing file, no llama_cpp, made for another summary format,
    a prompt that does not fit its context."""


class ModelRuntime:
    """One loaded model and its context. Not thread-safe: the context holds the prompt."""

    def __init__(self, path: str, threads: int = 1) -> None:
        # One thread by default: compiles run in parallel (make -j), each with its own model.
        self._model = self._ctx = self._batch = None
        if not os.path.isfile(path):
            raise ModelError(f"model file {path} does not exist")
        try:
            import llama_cpp
        except ImportError as err:
            raise ModelError(f"llama_cpp cannot be imported: {err}") from None
        self._api = api = llama_cpp
        # llama-cpp-python prints llama.cpp's log to stderr through this logger; a compiler
        # must not (a failure surfaces as ModelError instead).
        logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
        api.llama_backend_init()
        params = api.llama_model_default_params()
        params.n_gpu_layers = 0
        params.use_extra_bufts = False
        self._model = api.llama_model_load_from_file(path.encode(), params)
        if not self._model:
            raise ModelError(f"llama.cpp cannot load {path}")
        self.metadata = self._metadata()
        from llmcc.summary import SUMMARY_VERSION

        version = self.metadata.get(KEY_SUMMARY_VERSION)
        if version != str(SUMMARY_VERSION):
            self.close()
            raise ModelError(f"{path} was trained on summary version {version}, "
                             f"llmcc renders version {SUMMARY_VERSION}")
        context = api.llama_context_default_params()
        context.n_ctx = 0  # the model's own context length
        context.n_batch = context.n_ubatch = BATCH
        context.n_seq_max = 1
        context.n_threads = context.n_threads_batch = threads
        context.no_perf = True
        # Flash attention would be chosen on the CPU: it computes in F16 there, which moved
        # scores ~0.005 nats per token away from PyTorch's, and it saves nothing at this size.
        context.flash_attn_type = api.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._ctx = api.llama_init_from_model(self._model, context)
        if not self._ctx:
            self.close()
            raise ModelError(f"llama.cpp cannot make a context for {path}")
        self._vocab = api.llama_model_get_vocab(self._model)
        self._memory = api.llama_get_memory(self._ctx)
        self._batch = api.llama_batch_init(BATCH, 0, 1)
        self.n_ctx = api.llama_n_ctx(self._ctx)
        self.n_vocab = api.llama_vocab_n_tokens(self._vocab)
        special = self._control_tokens()
        try:
            self.bos, self.answer, self.end = special[BOS], special[ANSWER], special[END]
        except KeyError as err:
            self.close()
            raise ModelError(f"{path} lacks the special token {err}") from None
        self.pass_ids = {text: i for text, i in special.items() if text not in (BOS, ANSWER, END)}

    def close(self) -> None:
        api = getattr(self, "_api", None)
        if self._batch is not None:
            api.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            api.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            api.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _metadata(self) -> dict[str, str]:
        api, model = self._api, self._model
        values = {}
        buffer = ctypes.create_string_buffer(256)
        for i in range(api.llama_model_meta_count(model)):
            api.llama_model_meta_key_by_index(model, i, buffer, len(buffer))
            key = buffer.value.decode()
            size = api.llama_model_meta_val_str_by_index(model, i, buffer, len(buffer))
            if size >= len(buffer):
                buffer = ctypes.create_string_buffer(size + 1)
                api.llama_model_meta_val_str_by_index(model, i, buffer, len(buffer))
            values[key] = buffer.value.decode(errors="replace")
        return values

    def _control_tokens(self) -> dict[str, int]:
        """Text -> id of every control token: the format tokens and one per pass."""
        api, vocab = self._api, self._vocab
        return {api.llama_vocab_get_text(vocab, i).decode(): i for i in range(self.n_vocab)
                if api.llama_vocab_get_attr(vocab, i) & api.LLAMA_TOKEN_ATTR_CONTROL}

    def tokenize(self, text: str) -> list[int]:
        """Plain text, never special tokens: a pass name in a prompt is not a pass token."""
        data = text.encode()
        size = len(data) + 1
        while True:
            buffer = (self._api.llama_token * size)()
            n = self._api.llama_tokenize(self._vocab, data, len(data), buffer, size, False, False)
            if n >= 0:
                return list(buffer[:n])
            size = -n

    def prompt_ids(self, prompt: str) -> list[int]:
        return [self.bos, *self.tokenize(prompt), self.answer]

    def answer_ids(self, passes: PassList) -> list[int] | None:
        """A list's tokens and END; None if the model has no token for one of its passes."""
        try:
            return [*(self.pass_ids[name] for name in passes), self.end]
        except KeyError:
            return None

    def _decode(self, tokens: Sequence[int], start: int, all_logits: bool):
        """Evaluate `tokens` at positions start..; logits of every token or of the last one,
        (rows, n_vocab) float32."""
        import numpy as np  # llama_cpp's own dependency, imported with it

        api, batch = self._api, self._batch
        for offset in range(0, len(tokens), BATCH):
            chunk = tokens[offset:offset + BATCH]
            last_chunk = offset + BATCH >= len(tokens)
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = all_logits or (last_chunk and i == len(chunk) - 1)
            if api.llama_decode(self._ctx, batch) != 0:
                raise ModelError(f"llama_decode failed on {len(chunk)} tokens")
        rows = len(tokens) if all_logits else 1
        logits = api.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(logits, shape=(rows * self.n_vocab,)).reshape(rows, -1)

    def score(self, prompt: str, candidates: Sequence[PassList]) -> list[float]:
        """Log-likelihood of each candidate (tokens and END) after the prompt; -inf for a list
        with a pass the model does not know."""
        import numpy as np

        prompt_ids = self.prompt_ids(prompt)
        answers = [self.answer_ids(passes) for passes in candidates]
        longest = max((len(a) for a in answers if a), default=0)
        if len(prompt_ids) + longest > self.n_ctx:
            raise ModelError(f"{len(prompt_ids)} prompt tokens and {longest} answer tokens do "
                             f"not fit the model's context of {self.n_ctx}")
        start = len(prompt_ids)
        self._api.llama_memory_clear(self._memory, True)
        first = self._decode(prompt_ids, 0, all_logits=False).astype(np.float64)
        scores = []
        for answer in answers:
            if answer is None:
                scores.append(-math.inf)
                continue
            self._api.llama_memory_seq_rm(self._memory, 0, start, -1)  # the previous candidate
            logits = first
            if len(answer) > 1:  # the last token's own logits are not needed
                rest = self._decode(answer[:-1], start, all_logits=True).astype(np.float64)
                logits = np.concatenate([first, rest])
            top = logits.max(axis=1, keepdims=True)
            logz = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
            scores.append(float((logits[np.arange(len(answer)), answer] - logz).sum()))
        return scores

    def rank(self, prompt: str, candidates: Sequence[PassList], k: int) -> list[PassList]:
        """The k candidates the model finds likeliest, best first; ties keep the given order.
        Only ever lists from `candidates`."""
        scores = self.score(prompt, candidates)
        order = sorted(range(len(candidates)), key=lambda i: -scores[i])
        return [candidates[i] for i in order[:k]]

"""llmcc's model at compile time: a GGUF llama run by llama.cpp that ranks candidate pass lists.

The model reads a TU summary (llmcc.summary.to_prompt) and answers with one token. Each candidate
pass list it chooses among is a token of its own (`<|L0|>`, `<|L1|>`, ...; the lists themselves
are in the file's metadata, `KEY_CANDIDATES`), so ranking every candidate is one evaluation of
the prompt: the log-probabilities of the next token, from which `answers` chooses k lists (with
the file's coverage table, k that complement each other). The token texts are short
because llama-cpp-python's server reports a token longer than 32 bytes as "" (its issue 2362).
Why one token per list rather than a list spelt pass by pass and scored or generated:
  - one evaluation whatever the number of candidates, where scoring spelt lists costs a few
    tokens per candidate and generation a token per pass and per answer;
  - any OpenAI-compatible completion server reports it (`top_logprobs` of a one-token
    completion): the per-user server (llmcc.advisor.server) and a remote llama.cpp server
    (LLMCC_SERVER) answer exactly as the model does in-process (`answers` below, for all three);
  - the answer can only be a list that was measured in training, and training learns from the
    measured size of every candidate on every TU (llmcc.train.fit), not from one winner.
Every list in the metadata is parsed against the pass vocabulary; one that fails never becomes
an answer.

llama.cpp is driven through llama-cpp-python's bindings of its C API (llama.h), not the `Llama`
class, for one setting that class does not expose: `use_extra_bufts = False`. With it on,
llama.cpp repacks Q8_0 weights for the CPU's matrix extensions, and on CPUs with AMX the first
evaluation then crashes the process (llama.cpp issue 20824; seen on this project's machines).
Repacking a model of a few megabytes gains nothing anyway.

This module is imported only when a model is used, and it imports llama_cpp only when a model is
loaded: a cache hit never pays for either. The sequence format and llmcc's own metadata keys
are defined here, for llmcc.train to write what this module reads:

    BOS <prompt text> ANSWER <list token>
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from typing import Self

from llmcc.advisor import AdvisorError
from llmcc.passes import PassList, PassListError, never_run, parse

BOS, ANSWER, END = "<|bos|>", "<|answer|>", "<|end|>"
NONE = "<|none|>"  # the answer for a TU on which no candidate list beats clang's -Oz

# llmcc's keys in the GGUF metadata (the standard ones are gguf.Keys); values are strings.
KEY_CONFIG = "llmcc.config"                    # the model's Config as JSON
KEY_DATASET = "llmcc.dataset_sha256"           # hash of the examples trained on
KEY_COMMAND = "llmcc.train_command"            # the command line that trained the model
KEY_SUMMARY_VERSION = "llmcc.summary_version"  # prompts must be rendered by this version
KEY_CANDIDATES = "llmcc.candidates"            # JSON: the pass list of each list token, in order
KEY_COVERAGE = "llmcc.coverage"                # JSON: what each list saves where another is best
KEY_MEMBERS = "llmcc.members"                  # JSON: [[file beside this one, its blake2b], ...]
COVERAGE_SCALE = 100_000                       # its entries: log size ratios in these units

BATCH = 512  # tokens per llama_decode call: a longer prompt is evaluated in several


class ModelError(AdvisorError):
    """The model cannot be used: missing file, no llama_cpp, made for another summary format,
    a prompt that does not fit its context."""


def list_token(index: int) -> str:
    """The answer token of candidate `index`."""
    return f"<|L{index}|>"


def lists_by_token(candidates_json: str | None) -> dict[str, PassList]:
    """Answer token -> pass list, from a model's KEY_CANDIDATES; an invalid list is left out
    (the model can never propose it), and so are a list that must never run
    (llmcc.passes.NEVER_RUN) and a repeat of an earlier one (each list is answered once)."""
    try:
        texts = json.loads(candidates_json or "[]")
    except ValueError:
        return {}
    found: dict[str, PassList] = {}
    for index, text in enumerate(texts if isinstance(texts, list) else []):
        try:
            passes = parse(text)
        except (PassListError, AttributeError):
            continue
        if passes not in found.values() and not never_run(passes):
            found[list_token(index)] = passes
    return found


def gguf_strings(path: str, keys: tuple[str, ...]) -> dict[str, str]:
    """String values of a GGUF file's metadata, read without llama.cpp (a compile that asks a
    server must not load it), in one pass that stops once all `keys` are found; a key the file
    lacks, or every key of a file that is not GGUF, is left out."""
    import struct

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    found: dict[str, str] = {}
    try:
        with open(path, "rb") as handle:
            def read(fmt: str):
                size = struct.calcsize(fmt)
                data = handle.read(size)
                if len(data) != size:
                    raise ValueError("truncated")
                return struct.unpack(fmt, data)[0]

            def string() -> bytes:
                return handle.read(read("<Q"))

            def skip(kind: int) -> None:
                if kind == 8:
                    handle.seek(read("<Q"), 1)
                elif kind == 9:
                    element, count = read("<I"), read("<Q")
                    for _ in range(count):
                        skip(element)
                else:
                    handle.seek(sizes[kind], 1)

            if handle.read(4) != b"GGUF" or read("<I") < 2:
                return {}
            read("<Q")  # tensors
            for _ in range(read("<Q")):
                name, kind = string().decode(errors="replace"), read("<I")
                if name in keys and kind == 8:
                    found[name] = string().decode(errors="replace")
                    if len(found) == len(keys):
                        break
                else:
                    skip(kind)
    except (OSError, ValueError, KeyError, OverflowError, struct.error, MemoryError):
        return {}
    return found


def prompt_text(prompt: str) -> str:
    """The whole text sent to a model (BOS and ANSWER written out, read as special tokens)."""
    return BOS + prompt + ANSWER


def top_count(k: int, candidates: int) -> int:
    """How many of the likeliest next tokens to ask for: enough for every answer token (each
    of the `candidates` lists and NONE) and a few text tokens that may rank among them, since
    `answers` weighs every list by the likelihood of all (choosing among the likeliest 16 alone
    saved less at every k: bench/model_choice.py)."""
    return max(4 * k, candidates + 1 + 8)


def coverage_of(coverage_json: str | None,
                lists: dict[str, PassList]) -> list[list[float]] | None:
    """A model's KEY_COVERAGE: a square matrix of log size ratios with a row and a column for
    each of `lists`, or None if it has none or it is malformed (answers then rank by
    likelihood alone)."""
    try:
        table = json.loads(coverage_json or "null")
    except ValueError:
        return None
    if not (isinstance(table, list) and lists and len(table) > max(map(list_index, lists))
            and all(isinstance(row, list) and len(row) == len(table) and all(
                type(v) is int and v >= 0 for v in row) for row in table)):
        return None
    return [[v / COVERAGE_SCALE for v in row] for row in table]


def answer_tables(path: str) -> tuple[dict[str, PassList], list[list[float]] | None,
                                      str | None]:
    """A model file's answer tokens (`lists_by_token`), coverage table (`coverage_of`) and
    summary version, read from its metadata without llama.cpp: what a compile needs to turn a
    server's top log-probabilities into lists (`answers`)."""
    metadata = gguf_strings(path, (KEY_CANDIDATES, KEY_COVERAGE, KEY_SUMMARY_VERSION))
    lists = lists_by_token(metadata.get(KEY_CANDIDATES))
    return (lists, coverage_of(metadata.get(KEY_COVERAGE), lists),
            metadata.get(KEY_SUMMARY_VERSION))


def list_index(token: str) -> int:
    """The candidate index of an answer token (the inverse of list_token)."""
    return int(token[3:-2])


def answer_weights(top: Iterable[tuple[str, float]],
                   lists: dict[str, PassList]) -> dict[int, float]:
    """Each answered list's probability among the model's answers (the lists and NONE) in
    `top`'s (token text, log-probability) pairs: candidate index -> probability, likeliest
    first."""
    likely: dict[int, float] = {}  # candidate index -> log-probability, best first
    nothing = -math.inf            # log-probability of NONE
    for text, logprob in sorted(top, key=lambda item: -item[1]):
        if text in lists:
            likely.setdefault(list_index(text), logprob)
        elif text == NONE:
            nothing = max(nothing, logprob)
    if not likely:
        return {}
    first = max(nothing, *likely.values())
    total = math.exp(nothing - first) + sum(math.exp(lp - first) for lp in likely.values())
    return {j: math.exp(logprob - first) / total for j, logprob in likely.items()}


def answers(top: Iterable[tuple[str, float]], k: int, lists: dict[str, PassList],
            coverage: list[list[float]] | None = None,
            min_gain: float = 0.0) -> list[PassList]:
    """Up to k distinct pass lists from the model's (token text, log-probability) pairs,
    `lists` mapping answer tokens to distinct lists (`lists_by_token`): what every way of
    asking the model (in-process, per-user server, remote) returns.

    Without `coverage`, the k likeliest. With it, the k that together save the most in
    expectation: the likelihood of list j says how much the TU resembles the training TUs
    whose best list was j (of NONE: those no list improved), and coverage[j][i] is what list i
    saved on those TUs (mean log size ratio to -Oz; 0 for NONE's). Chosen greedily, each list
    is the one adding the most to the best of those already chosen, so a list that only
    repeats another's saving gives way to one that saves elsewhere, as the popular lists are
    chosen (llmcc.train.measure.greedy). With `min_gain` (a log size ratio), no list is added
    that is expected to save less: a TU the model expects nothing from costs no candidate."""
    weight = answer_weights(top, lists)
    if coverage is None or not weight:
        return [lists[list_token(i)] for i in list(weight)[:k]]
    remaining = {list_index(token): passes for token, passes in lists.items()}
    # parallel lists over the likely j (weight, coverage row, best saving so far): the loop
    # below runs candidates x answers times per list chosen, on every cache miss
    weights, rows = list(weight.values()), [coverage[j] for j in weight]
    best = [0.0] * len(rows)
    chosen: list[PassList] = []
    while remaining and len(chosen) < k:
        def gain(i: int, best: list[float] = best) -> float:
            return sum(w * (row[i] - saved) for w, row, saved in zip(weights, rows, best)
                       if row[i] > saved)
        pick = max(remaining, key=lambda i: (gain(i), weight.get(i, 0.0), -i))  # ties: likelier
        if min_gain and gain(pick) < min_gain:
            break
        chosen.append(remaining.pop(pick))
        best = [max(saved, row[pick]) for saved, row in zip(best, rows)]
    return chosen


def _normalised(scores):
    """Log-softmax of a numpy vector."""
    import numpy as np

    top = scores.max()
    return scores - top - np.log(np.exp(scores - top).sum())


class ModelRuntime:
    """One loaded model and its context. Not thread-safe: the context holds the prompt."""

    def __init__(self, path: str, threads: int = 1, gpu_layers: int = 0,
                 llmcc_model: bool = True, ensemble: bool = True) -> None:
        """`llmcc_model`: insist on a model llmcc trained (its summary version, list tokens);
        off for a model that answers in text (llmcc.advisor.llm_compiler). `ensemble`: also
        load the members the file names (KEY_MEMBERS; off for a member itself)."""
        # One thread by default: compiles run in parallel (make -j), each with its own model.
        self._model = self._ctx = self._batch = None
        self.path = path
        self.members: list[ModelRuntime] = []
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
        params.n_gpu_layers = gpu_layers
        params.use_extra_bufts = False
        self._model = api.llama_model_load_from_file(path.encode(), params)
        if not self._model:
            raise ModelError(f"llama.cpp cannot load {path}")
        self.metadata = self._metadata()
        from llmcc.summary import SUMMARY_VERSION

        version = self.metadata.get(KEY_SUMMARY_VERSION)
        if llmcc_model and version != str(SUMMARY_VERSION):
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
        # log-probabilities ~0.005 away from PyTorch's, and it saves nothing at this size.
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
        self.pieces = [self._piece(i).decode(errors="replace") for i in range(self.n_vocab)]
        self.lists = lists_by_token(self.metadata.get(KEY_CANDIDATES))
        self.coverage = coverage_of(self.metadata.get(KEY_COVERAGE), self.lists)
        if llmcc_model and not self.lists:
            self.close()
            raise ModelError(f"{path} has no candidate pass lists: not a model made by llmcc")
        if ensemble and KEY_MEMBERS in self.metadata:
            self._load_members(path, threads, gpu_layers)

    def _load_members(self, path: str, threads: int, gpu_layers: int) -> None:
        """The other models of an ensemble, each the very file this one was made with (its
        digest is here, so this file's hash, the advisor identity, covers them) and with the
        same tokens and lists: the ensemble's answer averages their log-probabilities."""
        from llmcc.advisor.model import file_digest

        try:
            entries = json.loads(self.metadata[KEY_MEMBERS])
            if not (isinstance(entries, list) and all(
                    isinstance(e, list) and len(e) == 2 and all(isinstance(v, str) for v in e)
                    and e[0] == os.path.basename(e[0]) for e in entries)):
                raise ValueError
            for name, digest in entries:
                member_path = os.path.join(os.path.dirname(path), name)
                if file_digest(member_path, None) != digest:
                    raise ModelError(f"{member_path} is not the ensemble member it was "
                                     "made with")
                member = ModelRuntime(member_path, threads, gpu_layers, ensemble=False)
                self.members.append(member)
                if member.pieces != self.pieces or member.lists != self.lists:
                    raise ModelError(f"ensemble member {member_path} has other tokens or "
                                     "lists")
        except ValueError:
            self.close()
            raise ModelError(f"{path}: its list of ensemble members is malformed") from None
        except AdvisorError as err:  # ModelError, or the member file cannot be read
            self.close()
            raise ModelError(f"{path}: {err}") from None

    def close(self) -> None:
        for member in self.members:
            member.close()
        self.members = []
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

    def _piece(self, token: int, special: bool = True) -> bytes:
        """A token's bytes as a server reports them (special tokens written out if `special`);
        a character may span tokens."""
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = self._api.llama_token_to_piece(self._vocab, token, buffer, size, 0, special)
            if n >= 0:
                return buffer.raw[:n]
            size = -n

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Text to tokens; BOS, ANSWER and list tokens written in it count only if `special`."""
        data = text.encode()
        size = len(data) + 1
        while True:
            buffer = (self._api.llama_token * size)()
            n = self._api.llama_tokenize(self._vocab, data, len(data), buffer, size, False,
                                         special)
            if n >= 0:
                return list(buffer[:n])
            size = -n

    def _last_logits(self, tokens: list[int], start: int = 0):
        """Evaluate `tokens` from position `start` (0: a new sequence); the logits after the
        last one, float64."""
        import numpy as np  # llama_cpp's own dependency, imported with it

        api, batch = self._api, self._batch
        if start == 0:
            api.llama_memory_clear(self._memory, True)
        for offset in range(0, len(tokens), BATCH):
            chunk = tokens[offset:offset + BATCH]
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = offset + i == len(tokens) - 1
            if api.llama_decode(self._ctx, batch) != 0:
                raise ModelError(f"llama_decode failed on {len(chunk)} tokens")
        logits = api.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(logits, shape=(self.n_vocab,)).astype(np.float64)

    def _prompt_tokens(self, text: str, room: int) -> list[int]:
        """`text` as tokens (special tokens read), leaving `room` positions in the context."""
        tokens = self.tokenize(text, special=True)
        if not tokens:
            raise ModelError("empty prompt")
        if len(tokens) + room > self.n_ctx:
            raise ModelError(f"{len(tokens)} prompt tokens do not fit the model's context "
                             f"of {self.n_ctx}")
        return tokens

    def logprobs(self, text: str):
        """Log-probabilities of every next token after `text` (read with special tokens); of an
        ensemble, the renormalised mean of its members' (a product of their distributions)."""
        tokens = self._prompt_tokens(text, 1)  # the members' alike: they have the same tokens
        mean = sum((m._own_logprobs(tokens) for m in self.members),
                   self._own_logprobs(tokens)) / (1 + len(self.members))
        return _normalised(mean) if self.members else mean

    def _own_logprobs(self, tokens: list[int]):
        return _normalised(self._last_logits(tokens))

    def top(self, text: str, n: int) -> list[tuple[str, float]]:
        """The n likeliest next tokens after `text`: (token text, log-probability), best first
        (an OpenAI completion's `top_logprobs`)."""
        import numpy as np

        logprobs = self.logprobs(text)
        order = np.argsort(-logprobs, kind="stable")[:n]
        return [(self.pieces[i], float(logprobs[i])) for i in order]

    def rank(self, prompt: str, k: int, min_gain: float = 0.0,
             top: Callable[[str, int], list[tuple[str, float]]] | None = None) -> list[PassList]:
        """The model's answer for a TU's prompt: up to k pass lists, best first (`answers`).
        `top`: what asks for the likeliest tokens (`self.top`; an evaluation, asking for every
        k of a prompt, hands in a memo of it)."""
        likeliest = (top or self.top)(prompt_text(prompt), top_count(k, len(self.lists)))
        return answers(likeliest, k, self.lists, self.coverage, min_gain)

    def generate(self, text: str, max_tokens: int) -> str:
        """The greedy continuation of `text` (BOS first if the model asks for it), up to
        `max_tokens` tokens or the end of its answer."""
        api = self._api
        bos = [api.llama_vocab_bos(self._vocab)] if api.llama_vocab_get_add_bos(
            self._vocab) else []
        tokens = bos + self._prompt_tokens(text, max_tokens + len(bos))
        logits, position, answer = self._last_logits(tokens), len(tokens), []
        for _ in range(max_tokens):
            token = int(logits.argmax())
            if api.llama_vocab_is_eog(self._vocab, token):
                break
            answer.append(token)
            logits = self._last_logits([token], position)
            position += 1
        return b"".join(self._piece(t, special=False) for t in answer).decode(errors="replace")

"""The model's tokenizer: byte-level BPE for the TU summary, one token per candidate pass list.

A prompt (llmcc.summary.to_prompt) is words and numbers, so a byte-level BPE trained on prompts
covers any TU, even one naming functions no training TU called. An answer is one token: each
candidate pass list the model chooses among is a token of its own
(llmcc.advisor.model_runtime.list_token), its list kept in the GGUF metadata.

The format tokens (BOS, ANSWER, END) are control tokens; the answers (NONE, for a TU no list
improves, and the list tokens) user-defined ones, which servers report by their text. They come
first in the vocabulary, in a fixed order, and the trainer never splits them. Prompt
text never contains them (to_prompt writes no "<|"), and this tokenizer never matches them in
text (HF's `encode_special_tokens`), as llama.cpp does not with `special=False`. llama.cpp must
split text exactly as this tokenizer does, which it does for GGUF tokenizer model "gpt2" with
pre-tokenizer "gpt-2" (any other pre-tokenizer name changes how text is split;
tests/test_model.py checks token parity).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from llmcc.advisor.model_runtime import ANSWER, BOS, END, KEY_CANDIDATES, NONE, list_token
from llmcc.passes import PassList, to_text

FORMAT_TOKENS = (BOS, ANSWER, END)
GGUF_MODEL = "gpt2"    # llama.cpp's byte-level BPE
GGUF_PRE = "gpt-2"     # llama.cpp's name for GPT-2's pre-tokenizer regex: exactly this spelling


def special_tokens(count: int) -> list[str]:
    """The tokens the vocabulary starts with, in order, for `count` candidate lists."""
    return [*FORMAT_TOKENS, NONE, *map(list_token, range(count))]


@dataclass(frozen=True)
class GGUFVocab:
    """The vocabulary as llama.cpp reads it: token texts by id, their types, the BPE merges."""

    tokens: list[str]
    types: list[int]
    merges: list[str]


class PassTokenizer:
    def __init__(self, tokenizer: Tokenizer, candidates: Sequence[PassList]) -> None:
        tokenizer.encode_special_tokens = True  # not saved with the tokenizer: set on every load
        self.tokenizer = tokenizer
        self.candidates = tuple(candidates)
        specials = special_tokens(len(self.candidates))
        if [tokenizer.token_to_id(token) for token in specials] != list(range(len(specials))):
            raise ValueError("tokenizer does not start with llmcc's format and answer tokens")
        self.bos, self.answer, self.end, self.none = range(4)
        self.first_list = self.none + 1  # candidate i is token first_list + i

    @classmethod
    def train(cls, prompts: Iterable[str], vocab_size: int,
              candidates: Sequence[PassList]) -> PassTokenizer:
        """`vocab_size` counts the format and list tokens too."""
        if len(set(candidates)) != len(candidates):
            raise ValueError("candidate pass lists must be distinct")
        specials = special_tokens(len(candidates))
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                           use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=2, show_progress=False,
            special_tokens=[AddedToken(t, normalized=False, special=True) for t in specials],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator(prompts, trainer)
        return cls(tokenizer, candidates)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Plain text, never special tokens: what llama.cpp's tokenize(special=False) gives."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def prompt_ids(self, prompt: str) -> list[int]:
        return [self.bos, *self.encode(prompt), self.answer]

    def gguf_vocab(self) -> GGUFVocab:
        from gguf import TokenType

        types = [TokenType.CONTROL] * len(FORMAT_TOKENS)
        types += [TokenType.USER_DEFINED] * (1 + len(self.candidates))  # NONE and the lists
        types += [TokenType.NORMAL] * (self.vocab_size - len(types))
        tokens = [self.tokenizer.id_to_token(i) for i in range(self.vocab_size)]
        merges = json.loads(self.tokenizer.to_str())["model"]["merges"]
        # tokenizers >= 0.20 writes a merge as a pair, older releases as "left right".
        merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
        return GGUFVocab(tokens, [int(t) for t in types], merges)

    def write_gguf(self, writer) -> None:
        """The tokenizer metadata llama.cpp needs, and the candidates, on a gguf.GGUFWriter."""
        # Before the token list: a compile reads it with model_runtime.gguf_strings, which
        # reads the metadata in order and stops once it has what it asked for.
        writer.add_string(KEY_CANDIDATES, json.dumps([to_text(c) for c in self.candidates]))
        vocab = self.gguf_vocab()
        writer.add_tokenizer_model(GGUF_MODEL)
        writer.add_tokenizer_pre(GGUF_PRE)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.types)
        writer.add_token_merges(vocab.merges)
        writer.add_bos_token_id(self.bos)
        writer.add_eos_token_id(self.end)
        writer.add_pad_token_id(self.end)
        writer.add_add_bos_token(False)  # prompts carry BOS themselves (model_runtime.prompt_text)
        writer.add_add_eos_token(False)

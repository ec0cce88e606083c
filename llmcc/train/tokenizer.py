"""The model's tokenizer: byte-level BPE for the TU summary, one token per pass.

A prompt (llmcc.summary.to_prompt) is words and numbers, so a byte-level BPE trained on prompts
covers any TU, even one naming functions no training TU called. An answer is a pass list, and
every vocabulary pass is one token of its own: a 16-pass candidate costs 17 tokens to score (with
END), and the model never has to spell a pass name.

The pass tokens and the format tokens (BOS, ANSWER, END) are special tokens: they come first in
the vocabulary (in a fixed order), the trainer never splits them, and prompt text never becomes
them (HF's `encode_special_tokens`, llama.cpp's `special=False`), so a prompt that happens to
contain "gvn" or "<|end|>" is read as text. llama.cpp must split text exactly as this tokenizer
does, which it does for GGUF tokenizer model "gpt2" with pre-tokenizer "gpt-2" (any other
pre-tokenizer name changes how text is split; tests/test_model.py checks token parity).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from llmcc.advisor.model_runtime import ANSWER, BOS, END
from llmcc.passes import VOCABULARY, PassList, validate

SPECIAL_TOKENS = (BOS, ANSWER, END, *sorted(VOCABULARY))
GGUF_MODEL = "gpt2"    # llama.cpp's byte-level BPE
GGUF_PRE = "gpt-2"     # llama.cpp's name for GPT-2's pre-tokenizer regex: exactly this spelling


@dataclass(frozen=True)
class GGUFVocab:
    """The vocabulary as llama.cpp reads it: token texts by id, their types, the BPE merges."""

    tokens: list[str]
    types: list[int]
    merges: list[str]


class PassTokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.encode_special_tokens = True  # not saved with the tokenizer: set on every load
        self.tokenizer = tokenizer
        ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]
        if ids != list(range(len(SPECIAL_TOKENS))):
            raise ValueError("tokenizer does not start with llmcc's special tokens "
                             "(trained for another pass vocabulary?)")
        self.bos, self.answer, self.end = ids[:3]
        self.pass_ids = dict(zip(SPECIAL_TOKENS[3:], ids[3:], strict=True))
        self.pass_names = {i: name for name, i in self.pass_ids.items()}

    @classmethod
    def train(cls, prompts: Iterable[str], vocab_size: int) -> PassTokenizer:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                           use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      min_frequency=2, show_progress=False)
        tokenizer.train_from_iterator(prompts, trainer)
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str) -> PassTokenizer:
        return cls(Tokenizer.from_file(path))

    def save(self, path: str) -> None:
        self.tokenizer.save(path)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Plain text, never special tokens: what llama.cpp's tokenize(special=False) gives."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def prompt_ids(self, prompt: str) -> list[int]:
        return [self.bos, *self.encode(prompt), self.answer]

    def answer_ids(self, passes: PassList) -> list[int]:
        return [*(self.pass_ids[name] for name in validate(passes)), self.end]

    def decode_answer(self, ids: Iterable[int]) -> PassList:
        names = []
        for i in ids:
            if i == self.end:
                break
            names.append(self.pass_names[i])
        return validate(names)

    def example(self, prompt: str, passes: PassList) -> tuple[list[int], int]:
        """(token ids of the whole sequence, how many of them are the prompt)."""
        prompt_ids = self.prompt_ids(prompt)
        return prompt_ids + self.answer_ids(passes), len(prompt_ids)

    def gguf_vocab(self) -> GGUFVocab:
        from gguf import TokenType

        special = set(range(len(SPECIAL_TOKENS)))
        tokens = [self.tokenizer.id_to_token(i) for i in range(self.vocab_size)]
        types = [int(TokenType.CONTROL if i in special else TokenType.NORMAL)
                 for i in range(self.vocab_size)]
        merges = json.loads(self.tokenizer.to_str())["model"]["merges"]
        # tokenizers >= 0.20 writes a merge as a pair, older releases as "left right".
        merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
        return GGUFVocab(tokens, types, merges)

    def write_gguf(self, writer) -> None:
        """The tokenizer metadata llama.cpp needs, on a gguf.GGUFWriter."""
        vocab = self.gguf_vocab()
        writer.add_tokenizer_model(GGUF_MODEL)
        writer.add_tokenizer_pre(GGUF_PRE)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.types)
        writer.add_token_merges(vocab.merges)
        writer.add_bos_token_id(self.bos)
        writer.add_eos_token_id(self.end)
        writer.add_pad_token_id(self.end)
        writer.add_add_bos_token(False)  # the runtime adds BOS itself, as prompt_ids does
        writer.add_add_eos_token(False)

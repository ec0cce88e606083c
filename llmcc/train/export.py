"""Export a trained model to GGUF, the one file llama.cpp loads at compile time.

The file carries everything needed to use and to reproduce the model: llama hyperparameters and
the tokenizer under gguf's standard keys, and under `llmcc.` the model's Config, the hash of the
examples it was trained on, the command that trained it and the summary version its prompts were
rendered with (llmcc.advisor.model_runtime refuses a model made for another version).

Tensor names and metadata keys come from the gguf package's constants. Two-dimensional weights
are stored as Q8_0 (8-bit blocks of 32 with a scale: a quarter of F32's bytes, no measurable
change of ranking) where a row is a whole number of blocks, F32 otherwise; norms are F32.
"""

from __future__ import annotations

import json
import os

import gguf
import numpy as np

from llmcc.advisor.model_runtime import (
    KEY_COMMAND,
    KEY_CONFIG,
    KEY_COVERAGE,
    KEY_DATASET,
    KEY_MEMBERS,
    KEY_SUMMARY_VERSION,
)
from llmcc.summary import SUMMARY_VERSION
from llmcc.train.model import Llama
from llmcc.train.tokenizer import PassTokenizer

QUANTIZATIONS = {"Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "F32": gguf.LlamaFileType.ALL_F32}


def permute_rope(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q or k projection from rotate-the-halves order (llmcc.train.model, Hugging
    Face) to rotate-adjacent-pairs order (llama.cpp's rope), head by head: what llama.cpp's
    convert_hf_to_gguf.py does for llama."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _name(tensor: gguf.MODEL_TENSOR, block: int | None = None) -> str:
    return gguf.TENSOR_NAMES[tensor].format(bid=block) + ".weight"


def gguf_tensors(model: Llama) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every tensor, in llama.cpp's layout. No `output.weight`:
    llama.cpp then uses the token embedding, as the tied model does."""
    config = model.config
    T = gguf.MODEL_TENSOR

    def array(parameter) -> np.ndarray:
        return parameter.detach().float().cpu().numpy()

    tensors = [(_name(T.TOKEN_EMBD), array(model.embedding.weight))]
    for i, block in enumerate(model.blocks):
        attention, ffn = block.attention, block.ffn
        tensors += [
            (_name(T.ATTN_NORM, i), array(block.attention_norm.weight)),
            (_name(T.ATTN_Q, i), permute_rope(array(attention.wq.weight), config.heads)),
            (_name(T.ATTN_K, i), permute_rope(array(attention.wk.weight), config.kv_heads)),
            (_name(T.ATTN_V, i), array(attention.wv.weight)),
            (_name(T.ATTN_OUT, i), array(attention.wo.weight)),
            (_name(T.FFN_NORM, i), array(block.ffn_norm.weight)),
            (_name(T.FFN_GATE, i), array(ffn.gate.weight)),
            (_name(T.FFN_UP, i), array(ffn.up.weight)),
            (_name(T.FFN_DOWN, i), array(ffn.down.weight)),
        ]
    tensors.append((_name(T.OUTPUT_NORM), array(model.norm.weight)))
    return tensors


def _add_tensor(writer: gguf.GGUFWriter, name: str, data: np.ndarray, quantization: str) -> None:
    q8 = gguf.GGMLQuantizationType.Q8_0
    block = gguf.GGML_QUANT_SIZES[q8][0]
    if quantization == "Q8_0" and data.ndim == 2 and data.shape[1] % block == 0:
        writer.add_tensor(name, gguf.quantize(data, q8), raw_dtype=q8)
    else:
        writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))


def export(model: Llama, tokenizer: PassTokenizer, path: str, *, dataset_sha256: str,
           command: str, quantization: str = "Q8_0",
           coverage: list[list[int]] | None = None,
           members: list[tuple[str, str]] | None = None) -> str:
    """Write the model to `path` (atomically: a reader never sees half a file), with
    `coverage` (llmcc.train.fit.coverage_table) if given, and as the head of an ensemble with
    `members`: (file name beside `path`, its blake2b digest) of the others."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r}: one of {', '.join(QUANTIZATIONS)}")
    config = model.config
    if tokenizer.vocab_size != config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, the model "
                         f"{config.vocab_size}")
    temporary = path + ".tmp"
    writer = gguf.GGUFWriter(temporary, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name("llmcc")
    writer.add_context_length(config.context)
    writer.add_embedding_length(config.dim)
    writer.add_block_count(config.layers)
    writer.add_feed_forward_length(config.hidden)
    writer.add_head_count(config.heads)
    writer.add_head_count_kv(config.kv_heads)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_base)
    writer.add_layer_norm_rms_eps(config.norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(QUANTIZATIONS[quantization])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # Before the token list: a compile reads these (with the candidates) in one pass that
    # stops once all are found (model_runtime.gguf_strings).
    writer.add_string(KEY_SUMMARY_VERSION, str(SUMMARY_VERSION))
    if coverage is not None:
        writer.add_string(KEY_COVERAGE, json.dumps(coverage, separators=(",", ":")))
    tokenizer.write_gguf(writer)
    writer.add_string(KEY_CONFIG, json.dumps(config.to_dict(), sort_keys=True))
    writer.add_string(KEY_DATASET, dataset_sha256)
    writer.add_string(KEY_COMMAND, command)
    if members:
        writer.add_string(KEY_MEMBERS, json.dumps([list(m) for m in members]))
    for name, data in gguf_tensors(model):
        _add_tensor(writer, name, data, quantization)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    os.replace(temporary, path)
    return path


def read_metadata(path: str) -> dict[str, object]:
    """Every metadata value of a GGUF file, read back with gguf's own reader (strings, numbers,
    lists of them): what a test or a curious user checks an export against."""
    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}

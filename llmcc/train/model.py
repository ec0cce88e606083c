"""llmcc's own model: a small llama-architecture decoder in PyTorch, readable in one sitting.

Llama and not GPT-2 because llama.cpp runs llama at compile time (llmcc.advisor.model_runtime):
RMSNorm, rotary position embeddings, a SwiGLU MLP, no biases, and the output layer tied to the
token embedding (llama.cpp uses the embedding when a file has no `output.weight`, and a small
model should not spend a third of its bytes on a second vocabulary matrix). Rotary embeddings
rotate the two halves of each head (the Hugging Face layout); llmcc.train.export permutes q and k
into llama.cpp's interleaved layout, as llama.cpp's own converter does.

Only training imports this module: torch is an optional extra (`pip install .[train]`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Config:
    """The default size is set by speed: a prompt is ~600 tokens and every cache miss pays
    for them. Through the per-user server (`bench/model_speed.py --untrained --size D,L,H,N`)
    dim 128 x 4 layers took 55 ms a TU here, dim 64 x 3 20 ms; the target is 30 ms."""

    vocab_size: int = 2048
    context: int = 2048         # positions the model is trained and run at (prompt + answer)
    dim: int = 64
    layers: int = 3
    heads: int = 2
    kv_heads: int = 2           # fewer than heads: grouped-query attention, a smaller KV cache
    hidden: int = 192           # SwiGLU width
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    seed: int = 0               # of the initial weights (and, in training, of the batch order)

    def __post_init__(self) -> None:
        if self.dim % self.heads or self.heads % self.kv_heads or self.head_dim % 2:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim}) into even "
                             f"head sizes, and kv_heads ({self.kv_heads}) must divide heads")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(config: Config, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, (length, head_dim), for rotating the two halves of each head."""
    half = config.head_dim // 2
    inv_freq = 1.0 / config.rope_base ** (torch.arange(half, dtype=torch.float32) / half)
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.heads, config.kv_heads, config.head_dim
        self.wq = nn.Linear(config.dim, config.heads * config.head_dim, bias=False)
        self.wk = nn.Linear(config.dim, config.kv_heads * config.head_dim, bias=False)
        self.wv = nn.Linear(config.dim, config.kv_heads * config.head_dim, bias=False)
        self.wo = nn.Linear(config.heads * config.head_dim, config.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self.wq(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(batch, length, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.kv_heads != self.heads:
            k = k.repeat_interleave(self.heads // self.kv_heads, dim=1)
            v = v.repeat_interleave(self.heads // self.kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(batch, length, -1))


class FeedForward(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.gate = nn.Linear(config.dim, config.hidden, bias=False)
        self.up = nn.Linear(config.dim, config.hidden, bias=False)
        self.down = nn.Linear(config.hidden, config.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn = FeedForward(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.ffn(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        cos, sin = rope_tables(config, config.context)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        # Every matrix drawn from one seeded generator: the same config gives the same weights,
        # whatever else used torch's global random state. GPT-2's scaling: each residual
        # branch's output projection shrinks with depth.
        generator = torch.Generator().manual_seed(config.seed)
        for name, parameter in self.named_parameters():
            if parameter.dim() == 2:
                deep = name.endswith(("wo.weight", "down.weight"))
                std = 0.02 / math.sqrt(2 * config.layers) if deep else 0.02
                nn.init.normal_(parameter, std=std, generator=generator)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states (batch, length, dim) for token ids (batch, length)."""
        length = ids.shape[1]
        if length > self.config.context:
            raise ValueError(f"{length} tokens do not fit the context of {self.config.context}")
        x = self.embedding(ids)
        cos, sin = self.cos[:length], self.sin[:length]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits from hidden states. Kept apart from `hidden` because training
        needs them only where an answer token is predicted, a few of a thousand positions."""
        return F.linear(hidden, self.embedding.weight)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (batch, length, vocab) for token ids (batch, length)."""
        return self.logits(self.hidden(ids))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def next_logprobs(model: Llama, prompt_ids: list[int]) -> torch.Tensor:
    """Log-probabilities (vocab,) of the token after `prompt_ids`: how the advisor ranks
    candidate lists, here in PyTorch to check llama.cpp against."""
    hidden = model.hidden(torch.tensor([list(prompt_ids)]))[0, -1]
    return F.log_softmax(model.logits(hidden).float(), dim=-1)

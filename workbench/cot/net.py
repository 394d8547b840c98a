"""The chain-of-thought network in plain PyTorch, laid out exactly as TransformerLens's native transformer.

``CotNet`` has the modules and parameter names of ``transformer_lens``'s ``NativeModel`` (``tok_embed``,
``layers.{l}.ln1``, ``layers.{l}.attn.q|k|v|o``, ``layers.{l}.ln2``, ``layers.{l}.mlp.fc_in|fc_out``, ``ln_out``,
``head``) and computes the same function (pre-LN blocks, ReLU MLP, causal attention with adjacent-pair RoPE or
no positions). It trains and generates without importing TransformerLens (a GPU machine may not have it) and
with PyTorch's fused attention; ``CotModel.tl`` puts TransformerLens's hookable model over the very same
parameters, and a test checks that both compute the same logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ROPE_BASE = 10_000.0


def rope_tables(n_ctx: int, d_head: int, base: float = ROPE_BASE) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [n_ctx, d_head] for adjacent-pair RoPE (pair (2i, 2i+1) rotates at frequency i), as TransformerLens."""
    inv_freq = 1.0 / (base ** (torch.arange(0, d_head, 2).float() / d_head))
    freqs = torch.outer(torch.arange(n_ctx).float(), inv_freq)  # [pos, d_head / 2]
    return freqs.cos().repeat_interleave(2, -1), freqs.sin().repeat_interleave(2, -1)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on x [batch, head, pos, d_head]: each pair (x0, x1) -> (x0 cos - x1 sin, x1 cos + x0 sin)."""
    half = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    return x * cos + half * sin


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        B, L, _ = x.shape
        split = lambda t: t.view(B, L, self.n_heads, self.d_head).transpose(1, 2)  # noqa: E731  [batch, head, pos, d_head]
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        if rope is not None:
            cos, sin = rope[0][:L].to(q.dtype), rope[1][:L].to(q.dtype)
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [batch, head, pos, d_head]
        return self.o(z.transpose(1, 2).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int) -> None:
        super().__init__()
        self.fc_in, self.fc_out = nn.Linear(d_model, d_mlp), nn.Linear(d_mlp, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(F.relu(self.fc_in(x)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_mlp: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d_model), Attention(d_model, n_heads)
        self.ln2, self.mlp = nn.LayerNorm(d_model), MLP(d_model, d_mlp)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), rope)
        return x + self.mlp(self.ln2(x))


class CotNet(nn.Module):
    """Decoder-only causal LM: ``forward(tokens [batch, pos]) -> logits [batch, pos, vocab]``.

    positions "rotary": RoPE on every head's queries and keys; "none": no positions at all (NoPE), kept as a
    zero, frozen ``pos`` table so the layout still matches TransformerLens's model with learned positions.
    """

    def __init__(self, *, d_vocab: int, n_layers: int, n_heads: int, d_model: int, d_mlp: int, n_ctx: int,
                 positions: str = "rotary") -> None:
        super().__init__()
        self.n_ctx = n_ctx
        self.tok_embed = nn.Embedding(d_vocab, d_model)
        self.pos = None
        if positions == "none":
            self.pos = nn.Embedding(n_ctx, d_model)
            nn.init.zeros_(self.pos.weight)
            self.pos.weight.requires_grad_(False)
        self.layers = nn.ModuleList(Block(d_model, n_heads, d_mlp) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, d_vocab, bias=False)
        if positions == "rotary":
            cos, sin = rope_tables(n_ctx, d_model // n_heads)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self._init()

    def _init(self) -> None:
        """TransformerLens's "gpt2" init of its native model: weights normal(0, 0.8 / sqrt(d_model)), the
        output projections (attention ``o``, MLP ``fc_out``) scaled by 1 / sqrt(2 n_layers); biases zero."""
        d_model = self.tok_embed.weight.shape[1]
        std = 0.8 / d_model**0.5
        outputs = {id(m) for block in self.layers for m in (block.attn.o, block.mlp.fc_out)}
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and module is not self.pos:
                scale = (2 * len(self.layers)) ** -0.5 if id(module) in outputs else 1.0
                nn.init.normal_(module.weight, std=std * scale)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok_embed(tokens)  # [batch, pos, d_model]
        if self.pos is not None:
            x = x + self.pos.weight[: tokens.shape[1]]
        rope = (self.rope_cos, self.rope_sin) if self.pos is None else None
        for block in self.layers:
            x = block(x, rope)
        return self.head(self.ln_out(x))  # [batch, pos, vocab]


__all__ = ["CotNet", "rope_tables", "rotate"]

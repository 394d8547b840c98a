"""The model's components, named after what they compute (TransformerLens conventions).

Every component takes a ``tap``: the hook point of the current loop step. The plain model passes
``NO_TAP`` (identity, nothing active) and so runs the fastest attention form; the hookable wrapper
passes per-step hook points, and attention computes its pattern explicitly where one is hooked.

Attention has three forms, chosen per call (``RelativeAttention.forward``): the fused SDPA kernel
(gradients, or a GPU); on CPU inference, queries in blocks of ``QUERY_BLOCK``, each against only the
keys it can see, so no [batch, head, query, key] table is ever whole; and the explicit full table,
when a hook reads the scores or the pattern (or inside ``full_table_attention()``, for comparisons).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workbench.model.config import ModelConfig


class Tap:
    """The identity hook: returns what it is given; no site is active."""

    def __call__(self, name: str, x: Tensor) -> Tensor:
        return x

    def active(self, name: str) -> bool:
        """Whether anything listens at ``name`` (a site may then be computed in a slower, explicit form)."""
        return False


NO_TAP = Tap()

QUERY_BLOCK = 64  # queries per block of the blocked CPU attention (a block's scores: [graphs, head, 64, keys seen])
#: the most bytes of scores one block holds: as many graphs go in a block as fit. One graph of N = 128 (~780
#: keys, 8 heads) fills 1.6 MiB; attention alone per graph at one thread was 7.3 ms for blocks of 4 graphs and
#: 9.8 ms for blocks of 64, whose 100 MiB buffer falls out of every cache (BENCHMARKS.md, Solve).
BLOCK_BYTES = 8 << 20
_blocked_attention = True  # False inside full_table_attention()


@contextmanager
def full_table_attention() -> Iterator[None]:
    """Compute CPU inference attention through the full [batch, head, query, key] table, as before blocking.

    For side-by-side comparisons (``benchmarks/bench_solve.py``, the tests); the outputs agree to float
    rounding. A process-wide switch, not per thread: hold the model lock (``workbench.hooks.guard``) when
    other threads may run the model meanwhile.
    """
    global _blocked_attention
    before, _blocked_attention = _blocked_attention, False
    try:
        yield
    finally:
        _blocked_attention = before


def _pattern_blocks(q: Tensor, k: Tensor, bias: Tensor, scale: float, block: int,
                    keep_scores: Tensor | None = None) -> Iterator[tuple[slice, int, int, Tensor]]:
    """``(graphs, start, end, pattern rows)`` per block: softmax(scale * q.k + bias) of queries start..end of
    the batch rows ``graphs`` against keys 0..end ([graphs, head, end - start, end]), each in one reused
    buffer (valid until the next). A block holds as many graphs as fit ``BLOCK_BYTES``, so the buffer stays
    in cache at any batch size. ``keep_scores`` ([batch, head, query, key]) gets every block's scores before
    the softmax, -inf past ``end``."""
    B, P, H, d = q.shape
    qh = (q * scale).transpose(1, 2)  # [batch, head, query, d_head]; scaling q, not the scores (exact for a power of 2)
    kh = k.permute(0, 2, 3, 1).contiguous()  # [batch, head, d_head, key]
    rows = min(block, P)
    per_graph = H * rows * P * q.element_size()
    graphs = max(1, min(B, BLOCK_BYTES // per_graph))
    buffer = torch.empty(graphs * H * rows * P, dtype=q.dtype, device=q.device)
    for b0 in range(0, B, graphs):
        g = slice(b0, min(b0 + graphs, B))
        n = g.stop - g.start
        for start in range(0, P, block):
            end = min(start + block, P)
            scores = buffer[:n * H * (end - start) * end].view(n, H, end - start, end)  # [graphs, head, block, end]
            torch.matmul(qh[g, :, start:end], kh[g, ..., :end], out=scores).add_(bias[:, start:end, :end])
            if keep_scores is not None:
                keep_scores[g, :, start:end, :end] = scores
                keep_scores[g, :, start:end, end:] = float("-inf")
            yield g, start, end, torch.softmax(scores, -1, out=scores)


def blocked_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float,
                      block: int = QUERY_BLOCK) -> Tensor:
    """softmax(scale * q.k + bias) @ v, queries in blocks, each block against the keys up to its last query.

    q, k, v: [batch, pos, head, d_head]; bias: [head, query, key], -inf above the diagonal (causal), so
    the keys past a block's last query, all masked, are skipped. Returns z [batch, pos, head, d_head].
    Inference only (no autograd through it): every block's scores reuse one buffer and become its pattern
    in place.
    """
    return blocked_tables(q, k, v, bias, scale, scores=False, pattern=False, block=block)[0]


def blocked_tables(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float, *, scores: bool, pattern: bool,
                   block: int = QUERY_BLOCK) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """z as ``blocked_attention`` computes it, plus the whole score table and/or pattern its blocks went through.

    What a hook on ``hook_attn_scores`` or ``hook_pattern`` gets on CPU inference: each block's rows are
    written once into the full tables ([batch, head, query, key]; -inf / 0 above the diagonal, as the full
    table has them), with no second pass over the masked half and no score table recomputed, and z comes
    from the same blocks. The caller recomputes z only if a hook edits a table (``edited``).
    """
    B, P, H, d = q.shape
    vh = v.transpose(1, 2).contiguous()  # [batch, head, key, d_head]
    z = torch.empty(B, H, P, d, dtype=v.dtype, device=v.device)
    score_table = torch.empty(B, H, P, P, dtype=q.dtype, device=q.device) if scores else None
    pattern_table = torch.empty(B, H, P, P, dtype=q.dtype, device=q.device) if pattern else None
    for g, start, end, rows in _pattern_blocks(q, k, bias, scale, block, keep_scores=score_table):
        if pattern_table is not None:
            pattern_table[g, :, start:end, :end] = rows
            pattern_table[g, :, start:end, end:] = 0.0
        # a fresh [graphs, head, block, d_head] then a copy: matmul(out=) into the strided slice of z runs one
        # small matmul per (batch, head), which at 2 threads cost 2x the whole attention
        z[g, :, start:end] = torch.matmul(rows, vh[g, :, :end])
    return z.transpose(1, 2), score_table, pattern_table


def edited(returned: Tensor, given: Tensor, version: int) -> bool:
    """Whether a hook changed what it was ``given`` (``version``: the tensor's ``_version`` before the hook):
    it returned another tensor, or wrote into this one. A hook that only reads (a cache) changes neither."""
    return returned is not given or given._version != version


class FactorEmbed(nn.Module):
    """Sum of one embedding per factor: a token (syntax, variable, operation, value) -> [d_model]."""

    def __init__(self, factor_sizes: tuple[int, ...], d_model: int) -> None:
        super().__init__()
        self.W_E = nn.ModuleList(nn.Embedding(n, d_model) for n in factor_sizes)

    def forward(self, state: Tensor) -> Tensor:  # [batch, pos, factor] -> [batch, pos, d_model]
        return sum(emb(state[..., f]) for f, emb in enumerate(self.W_E))


class FactorUnembed(nn.Module):
    """One linear head per factor: [batch, pos, d_model] -> logits per factor [batch, pos, vocab_f]."""

    def __init__(self, factor_sizes: tuple[int, ...], d_model: int) -> None:
        super().__init__()
        self.W_U = nn.ModuleList(nn.Linear(d_model, n) for n in factor_sizes)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [head(x) for head in self.W_U]


def relative_buckets(n_pos: int, window: int, device: torch.device) -> Tensor:
    """Bucket of every (query, key) pair: the distance q - k, clipped to ``window - 1`` ([query, key]).

    All distances >= window - 1 share the last bucket, so long-range lookups are purely by content and
    the same table serves any sequence length (what lets the model run on longer graphs).
    """
    pos = torch.arange(n_pos, device=device)
    return (pos[:, None] - pos[None, :]).clamp(min=0, max=window - 1)


class RelativeAttention(nn.Module):
    """Causal multi-head attention with a learned per-head bias on clipped relative distance."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        H, D, d = cfg.n_heads, cfg.d_model, cfg.d_head
        self.n_heads, self.d_head, self.window, self.dropout = H, d, cfg.rel_window, cfg.dropout
        self.rel_bias_scale = cfg.rel_bias_scale
        init = lambda *shape: nn.Parameter(torch.randn(*shape) / math.sqrt(shape[-2]))  # noqa: E731
        self.W_Q, self.W_K, self.W_V = init(H, D, d), init(H, D, d), init(H, D, d)
        if cfg.qk_init == "mimetic":
            with torch.no_grad():
                self.W_K.copy_(self.W_Q)
        self.W_O = nn.Parameter(torch.randn(H, d, D) / math.sqrt(H * d))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(H, d)) for _ in range(3))
        self.b_O = nn.Parameter(torch.zeros(D))
        self.rel_bias = nn.Parameter(torch.zeros(H, cfg.rel_window))  # [head, bucket], in units of rel_bias_scale
        self.head_gain = nn.Parameter(torch.ones(H)) if cfg.head_gain else None  # [head] on the queries
        # Training-time temperature of the content scores (q.k), set per curriculum phase; inference always uses 1.
        # A lookup trained to work under softened scores is sharper than it needs to be at inference, so it keeps
        # its mass on the one defining position among many more same-name look-alikes than training showed.
        self.train_temperature = 1.0

    def position_bias(self, n_pos: int) -> Tensor:
        """Additive score bias [head, query, key]: the relative-position term, -inf above the diagonal.

        Without gradients (inference) the table of the longest length so far is kept, and a shorter length
        gets its top-left corner (the bias depends on q - k only): a loop runs the same layer at every
        step, at a width that shrinks as graphs finish, and rebuilding the [head, query, key] table each
        time cost ~20% of a step.
        """
        key = (self.rel_bias.data_ptr(), self.rel_bias._version, self.rel_bias.dtype, self.rel_bias.device)
        if not torch.is_grad_enabled() and getattr(self, "_bias_key", None) == key and self._bias.shape[-1] >= n_pos:
            return self._bias[:, :n_pos, :n_pos]
        bias = self.rel_bias_scale * self.rel_bias[:, relative_buckets(n_pos, self.window, self.rel_bias.device)]
        causal = torch.ones(n_pos, n_pos, dtype=torch.bool, device=bias.device).triu(1)
        bias = bias.masked_fill(causal, float("-inf"))
        if not torch.is_grad_enabled():
            self._bias_key, self._bias = key, bias
        return bias

    def project(self, x: Tensor, W: Tensor, b: Tensor) -> Tensor:
        """x [batch, pos, d_model] through one per-head projection (W [head, d_model, d_head], b [head, d_head])
        -> [batch, pos, head, d_head], as one matmul."""
        B, P, D = x.shape
        H, d = self.n_heads, self.d_head
        return (x @ W.permute(1, 0, 2).reshape(D, H * d)).view(B, P, H, d) + b

    def queries(self, x: Tensor) -> Tensor:
        """The queries [batch, pos, head, d_head], each head's scaled by its gain where the model has one."""
        q = self.project(x, self.W_Q, self.b_Q)
        return q if self.head_gain is None else q * self.head_gain[:, None]  # each head's sharpness, one scalar

    def scores(self, x: Tensor) -> Tensor:
        """The attention scores [batch, head, query, key] at temperature 1 (bias and causal mask included):
        what a training objective on the routing itself reads (``objectives.lookup_attention_loss``)."""
        q, k = self.queries(x), self.project(x, self.W_K, self.b_K)
        return torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)) / math.sqrt(self.d_head) + self.position_bias(x.shape[1])

    def forward(self, x: Tensor, tap: Tap = NO_TAP, prefix: str = "") -> Tensor:  # [batch, pos, d_model]
        B, P, D = x.shape
        H, d = self.n_heads, self.d_head
        q = tap(prefix + "hook_q", self.queries(x))  # [batch, pos, head, d_head]
        k = tap(prefix + "hook_k", self.project(x, self.W_K, self.b_K))
        v = tap(prefix + "hook_v", self.project(x, self.W_V, self.b_V))
        bias = self.position_bias(P)  # [head, query, key]
        drop = self.dropout if self.training else 0.0
        temperature = self.train_temperature if self.training else 1.0
        # The fused kernel wins when gradients flow or on a GPU. On a CPU without gradients (inference) it
        # loses to the explicit form, and the explicit form to query blocks, which skip the masked half and
        # keep every score table small (attention of batch 8 x 780 positions, one thread: SDPA with the bias
        # as float mask 321 ms, full table 237 ms, blocks of 64 queries 64 ms; BENCHMARKS.md, Solve). A hook
        # on the scores or the pattern gets the whole table, written by the same blocks that compute z; z is
        # recomputed from a table only if a hook edits it. The per-head results come from the blocks' z.
        cpu_inference = not torch.is_grad_enabled() and x.device.type == "cpu"
        blocks = cpu_inference and drop == 0.0 and _blocked_attention
        scale = 1 / (math.sqrt(d) * temperature)
        hooked_scores, hooked_pattern = tap.active(prefix + "hook_attn_scores"), tap.active(prefix + "hook_pattern")
        if blocks and not hooked_scores and not hooked_pattern:
            z = blocked_attention(q, k, v, bias, scale)
        elif blocks:  # a hook reads the scores or the pattern: the blocks fill the tables and z at once
            z, scores, pattern = blocked_tables(q, k, v, bias, scale, scores=hooked_scores, pattern=hooked_pattern)
            if scores is not None:
                version = scores._version
                seen = tap(prefix + "hook_attn_scores", scores)
                if edited(seen, scores, version):  # the pattern and z follow the edited scores
                    z, pattern = None, seen.softmax(-1)
            if hooked_pattern:
                version = pattern._version
                seen = tap(prefix + "hook_pattern", pattern)
                if z is None or edited(seen, pattern, version):  # z reads what the hook left
                    z, pattern = None, seen
            if z is None:
                z = torch.matmul(pattern, v.transpose(1, 2)).transpose(1, 2)  # [batch, pos, head, d_head]
        elif cpu_inference or hooked_scores or hooked_pattern or tap.active(prefix + "hook_z") or tap.active(prefix + "hook_result"):
            scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1))  # [batch, head, query, key]
            scores = tap(prefix + "hook_attn_scores", scores.mul_(scale).add_(bias))  # in place: one big tensor, not three
            pattern = tap(prefix + "hook_pattern", F.dropout(scores.softmax(-1), drop, self.training))
            z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)
        else:
            z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               attn_mask=bias, dropout_p=drop, scale=scale).transpose(1, 2)
        z = tap(prefix + "hook_z", z)  # [batch, pos, head, d_head]
        if tap.active(prefix + "hook_result"):
            result = tap(prefix + "hook_result", torch.einsum("bphd,hdm->bphm", z, self.W_O))  # [batch, pos, head, d_model]
            return result.sum(2) + self.b_O
        return z.reshape(B, P, H * d) @ self.W_O.reshape(H * d, D) + self.b_O


class MLP(nn.Module):
    """Two-layer ReLU MLP, width ``mlp_width``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Linear(cfg.d_model, cfg.mlp_width)
        self.W_out = nn.Linear(cfg.mlp_width, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, tap: Tap = NO_TAP, prefix: str = "") -> Tensor:
        pre = tap(prefix + "hook_pre", self.W_in(x))  # [batch, pos, d_mlp]
        in_place = not torch.is_grad_enabled() and not tap.active(prefix + "hook_pre")  # nobody keeps pre
        post = tap(prefix + "hook_post", F.relu(pre, inplace=in_place))
        return self.dropout(self.W_out(post))


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then + MLP(LN(.))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = RelativeAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, tap: Tap = NO_TAP, prefix: str = "") -> Tensor:
        x = tap(prefix + "hook_resid_pre", x)
        x = x + tap(prefix + "hook_attn_out", self.attn(self.ln1(x), tap, prefix + "attn."))
        x = tap(prefix + "hook_resid_mid", x)
        x = x + tap(prefix + "hook_mlp_out", self.mlp(self.ln2(x), tap, prefix + "mlp."))
        return tap(prefix + "hook_resid_post", x)

"""The blocks of a ``StepView``: TransformerLens-shaped hook points and weights over the shared ``LoopedModel``.

TransformerLens models are usually loaded with ``fold_ln=True``: every LayerNorm's scale and shift
are folded into the weights that read its output, and the LayerNorm left in the model only centres
and divides by the norm (``normalization_type="LNPre"``). ``ActivationCache.apply_ln_to_stack`` and
``logit_attrs`` assume exactly that, so a view folds the same way by default:

    W_Q[h] = diag(ln1.w) W_Q[h]          b_Q[h] = b_Q[h] + ln1.b W_Q[h]        (and K, V)
    W_in   = diag(ln2.w) W_in            b_in   = b_in + ln2.b W_in
    W_U    = diag(ln_final.w) W_U        b_U    = b_U + ln_final.b W_U

With ``fold_ln=False`` the weights are the model's own and the LayerNorms keep their ``w`` and ``b``
(``normalization_type="LN"``). Either way every weight here is read from the one shared block stack
when asked for (detached): the same weights serve every loop step, and training moves them all.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from workbench.model.layers import Block

ATTN_SITES = ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z", "hook_result")


def layer_norm_scale(x: Tensor, eps: float) -> Tensor:
    """The scale a LayerNorm divides ``x`` by: ``sqrt(var + eps)`` over d_model, [..., 1] (TransformerLens's ``hook_scale``)."""
    return (x.var(-1, unbiased=False, keepdim=True) + eps).sqrt()


class Circuits:
    """TransformerLens's ``QK`` and ``OV`` from ``W_Q``/``W_K``/``W_V``/``W_O``, as ``FactoredMatrix``es
    ([head, d_model, d_model] on one attention layer, [layer, head, ...] on a whole step view)."""

    @property
    def QK(self):
        """``W_Q @ W_K^T``."""
        from transformer_lens import FactoredMatrix

        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self):
        """``W_V @ W_O``."""
        from transformer_lens import FactoredMatrix

        return FactoredMatrix(self.W_V, self.W_O)


class LayerNormView(nn.Module):
    """A LayerNorm of the shared stack: ``LNPre`` (centre and scale only) when folded, else the model's own."""

    def __init__(self, ln: nn.LayerNorm, fold: bool) -> None:
        super().__init__()
        object.__setattr__(self, "_ln", ln)  # not a submodule: the view holds no weights of its own
        self.fold = fold

    @property
    def eps(self) -> float:
        return self._ln.eps

    @property
    def w(self) -> Tensor:  # [d_model]
        return torch.ones_like(self._ln.weight.detach()) if self.fold else self._ln.weight.detach()

    @property
    def b(self) -> Tensor:  # [d_model]
        return torch.zeros_like(self._ln.bias.detach()) if self.fold else self._ln.bias.detach()

    def forward(self, x: Tensor) -> Tensor:  # [..., d_model]
        if self.fold:
            return F.layer_norm(x, x.shape[-1:], eps=self._ln.eps)
        return self._ln(x)


def _fold_in(ln: nn.LayerNorm, W: Tensor, b: Tensor, fold: bool) -> tuple[Tensor, Tensor]:
    """``(W, b)`` of a map reading a LayerNorm's output (``W`` [..., d_model, out] read by ``x @ W``), folded if asked."""
    W, b = W.detach(), b.detach()
    if not fold:
        return W, b
    w, shift = ln.weight.detach(), ln.bias.detach()
    return w[:, None] * W, b + torch.einsum("m,...mo->...o", shift, W)


class AttnView(Circuits, nn.Module):
    """One attention layer at one step: TransformerLens's hook points and per-head weights ``[head, ...]``."""

    def __init__(self, block: Block, fold: bool) -> None:
        super().__init__()
        for site in ATTN_SITES:
            setattr(self, site, HookPoint())
        object.__setattr__(self, "_block", block)
        self.fold = fold

    def _qkv(self, W: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return _fold_in(self._block.ln1, W, b, self.fold)  # [head, d_model, d_head], [head, d_head]

    W_Q = property(lambda self: self._qkv(self._block.attn.W_Q, self._block.attn.b_Q)[0])
    b_Q = property(lambda self: self._qkv(self._block.attn.W_Q, self._block.attn.b_Q)[1])
    W_K = property(lambda self: self._qkv(self._block.attn.W_K, self._block.attn.b_K)[0])
    b_K = property(lambda self: self._qkv(self._block.attn.W_K, self._block.attn.b_K)[1])
    W_V = property(lambda self: self._qkv(self._block.attn.W_V, self._block.attn.b_V)[0])
    b_V = property(lambda self: self._qkv(self._block.attn.W_V, self._block.attn.b_V)[1])
    W_O = property(lambda self: self._block.attn.W_O.detach())  # [head, d_head, d_model]
    b_O = property(lambda self: self._block.attn.b_O.detach())  # [d_model]

    @property
    def attn_scale(self) -> float:
        """What q.k is divided by (TransformerLens's ``attn_scale``)."""
        return math.sqrt(self._block.attn.d_head)

    def position_bias(self, n_pos: int) -> Tensor:
        """The additive score bias [head, query, key] on relative distance (-inf above the diagonal).

        It stands where a standard TransformerLens model adds ``W_pos`` to the residual stream: this
        model has no positional embedding.
        """
        with torch.no_grad():
            return self._block.attn.position_bias(n_pos).detach().clone()



class MLPView(nn.Module):
    """One MLP at one step: ``hook_pre``/``hook_post`` and TransformerLens-shaped weights (``x @ W_in``)."""

    def __init__(self, block: Block, fold: bool) -> None:
        super().__init__()
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()
        object.__setattr__(self, "_block", block)
        self.fold = fold

    def _in(self) -> tuple[Tensor, Tensor]:
        lin = self._block.mlp.W_in
        return _fold_in(self._block.ln2, lin.weight.T, lin.bias, self.fold)  # [d_model, d_mlp], [d_mlp]

    W_in = property(lambda self: self._in()[0])
    b_in = property(lambda self: self._in()[1])
    W_out = property(lambda self: self._block.mlp.W_out.weight.detach().T)  # [d_mlp, d_model]
    b_out = property(lambda self: self._block.mlp.W_out.bias.detach())  # [d_model]


class BlockView(nn.Module):
    """One block at one step, TransformerLens's layout: ``hook_resid_pre``, ``ln1``, ``attn``, ..., ``hook_resid_post``."""

    def __init__(self, block: Block, fold: bool) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.ln1 = LayerNormView(block.ln1, fold)
        self.attn = AttnView(block, fold)
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.ln2 = LayerNormView(block.ln2, fold)
        self.mlp = MLPView(block, fold)
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()


__all__ = ["layer_norm_scale", "LayerNormView", "AttnView", "MLPView", "BlockView"]

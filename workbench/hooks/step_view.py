"""``StepView``: one loop step of a looped model, shaped like a TransformerLens ``HookedTransformer``.

``hm.at_step(t)`` gives a model whose forward runs the loop from the input state and returns step t's
logits, whose hook points carry TransformerLens's own names for that step (``blocks.1.attn.hook_pattern``,
``hook_embed``, ...), and whose ``cfg``, weights and token helpers look like a ``HookedTransformer``'s.
So TransformerLens code written for a standard model runs on one step unchanged:
``transformer_lens.patching`` helpers, ``ActivationCache`` analyses, viewers that read ``blocks.{l}``.

How the factored tokens map onto TransformerLens's single vocabulary:

- **tokens**: one packed id per position (``workbench.hooks.packed``): ``to_tokens`` returns
  ``[batch, pos]`` ids, which is what TransformerLens reads positions from; ``[batch, pos, factor]``
  tokens and problem text are accepted too.
- **W_E, W_U, b_U, d_vocab**: those of one chosen **factor** (``factor="value"`` by default: the head
  that writes values, the one that matters for the arithmetic). The model embeds a position as the sum
  of its four factors' rows (``hook_embed`` holds that sum, plus the role embedding of defining
  positions when the model has one); ``W_E`` is the chosen factor's table, ``W_U`` its unembedding head
  (folded with ``ln_final``, see ``step_weights``), and the view's logits are that head's.
- **positions**: there is no ``W_pos``; each head adds a learned bias on relative distance to its
  scores (``blocks[l].attn.position_bias``).

What is genuinely different from a standard model: the weights are shared by every step (a view's
weights are the same tensors at every t), and step t's input is the state steps 0..t-1 wrote
through the discrete bottleneck, so gradients stop at step t's input state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from workbench.errors import WorkbenchError
from workbench.hooks.cache import MissingAttribute
from workbench.hooks.caching import cache_run
from workbench.hooks.guard import MODEL_LOCK
from workbench.hooks.inputs import as_tensor_input
from workbench.hooks.packed import n_packed, pack, sequence_text, token_label, unpack
from workbench.hooks.points import BorrowedMode
from workbench.hooks.step_weights import BlockView, Circuits, LayerNormView, layer_norm_scale
from workbench.task.config import ALL_OPERATIONS
from workbench.task.vocab import FACTORS, SYNTAX_NAMES

if TYPE_CHECKING:
    from workbench.hooks.tl_wrapper import HookedLooped

#: attributes of a HookedTransformer this model does not have, and what to use instead
MISSING = {
    "W_pos": "this model has no positional embedding: each head adds a bias on relative distance, "
             "blocks[l].attn.position_bias(n_pos)",
    "tokenizer": "tokens are factored codes, not text pieces: use to_tokens, to_str_tokens and to_string",
    "generate": "a looped model does not generate text: run the loop with hm(tokens) or workbench.solve",
}


@dataclass(frozen=True, kw_only=True)
class StepConfig:
    """The fields of TransformerLens's ``HookedTransformerConfig`` for one step, plus ``step`` and ``factor``.

    ``d_vocab``/``d_vocab_out``: the chosen factor's codes (what ``W_E``/``W_U`` index);
    ``d_vocab_packed``: the number of packed token ids. ``n_ctx``: the longest sequence the task
    allows (8 positions per equation, one equation per name of the pool); the model itself has no
    fixed context, its position bias is relative.
    """

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    n_ctx: int
    d_vocab: int
    d_vocab_out: int
    d_vocab_packed: int
    act_fn: str = "relu"
    normalization_type: str = "LNPre"
    eps: float = 1e-5
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    attn_only: bool = False
    attn_scale: float = 1.0
    positional_embedding_type: str = "relative_positional_bias"
    n_key_value_heads: int | None = None
    final_rms: bool = False
    gated_mlp: bool = False
    parallel_attn_mlp: bool = False
    use_attn_result: bool = True
    use_split_qkv_input: bool = False
    use_attn_in: bool = False
    use_hook_mlp_in: bool = False
    default_prepend_bos: bool = False
    tokenizer_prepends_bos: bool = False
    tokenizer_name: str | None = None
    model_name: str = "looped"
    original_architecture: str = "LoopedModel"
    n_devices: int = 1
    step: int = 0
    factor: int = 3
    factor_name: str = "value"
    factor_sizes: tuple[int, ...] = ()


def factor_index(factor: int | str) -> int:
    """The index of ``factor`` (a name in ``FACTORS`` or 0..3)."""
    if isinstance(factor, str) and factor in FACTORS:
        return FACTORS.index(factor)
    if isinstance(factor, int) and not isinstance(factor, bool) and 0 <= factor < len(FACTORS):
        return factor
    raise WorkbenchError(f"factor must be one of {list(FACTORS)} (or 0..3), got {factor!r}")


def with_ln_scales(cache: dict[str, Tensor], n_layers: int, eps: float) -> dict[str, Tensor]:
    """``cache`` plus TransformerLens's LayerNorm scales, derived from the residuals it holds.

    The LayerNorms run inside the shared blocks without hook points of their own; their scale is a
    function of the residual they read (``blocks.{l}.ln1`` of ``resid_pre``, ``ln2`` of ``resid_mid``,
    ``ln_final`` of the last ``resid_post``), which is what ``apply_ln_to_stack`` needs.
    """
    out = dict(cache)
    sources = [(f"blocks.{l}.ln{i}.hook_scale", f"blocks.{l}.hook_resid_{where}")
               for l in range(n_layers) for i, where in ((1, "pre"), (2, "mid"))]
    sources.append(("ln_final.hook_scale", f"blocks.{n_layers - 1}.hook_resid_post"))
    for key, resid in sources:
        if resid in out and key not in out:
            out[key] = layer_norm_scale(out[resid], eps)
    return out


class StepView(BorrowedMode, Circuits, HookedRootModule):
    """Loop step ``step`` of ``hm``'s model as a HookedTransformer-style model (see the module docstring).

    >>> from workbench.hooks import hooked
    >>> from workbench.model.config import ModelConfig
    >>> from workbench.model.looped import LoopedModel
    >>> from workbench.task.config import TaskConfig
    >>> torch.manual_seed(0) and None
    >>> view = hooked(LoopedModel(ModelConfig(n_layers=2, n_heads=2, d_model=16), TaskConfig(n_names=8))).at_step(1)
    >>> tokens = view.to_tokens("a = 3\\nb = a + a")
    >>> logits, cache = view.run_with_cache(tokens)
    >>> tuple(tokens.shape), tuple(logits.shape), tuple(view.W_Q.shape), tuple(cache["pattern", 1].shape)
    ((1, 9), (1, 9, 25), (2, 2, 16, 8), (1, 2, 9, 9))
    >>> view.to_str_tokens(tokens)
    ['3', '=', 'a=?', 'SEP', 'a=?', '+', 'a=?', '=', 'b=?']
    """

    def __init__(self, hm: "HookedLooped", step: int, factor: int | str = "value", fold_ln: bool = True) -> None:
        super().__init__()
        model = hm.model
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise WorkbenchError(f"step must be a non-negative integer, got {step!r}")
        if not model.cfg.looped and step > 0:
            raise WorkbenchError(f"a feedforward model runs one step: use at_step(0), not at_step({step})")
        object.__setattr__(self, "_hm", hm)  # not submodules: the view owns hook points only
        object.__setattr__(self, "_model", model)
        self.step, self.factor, self.fold_ln = step, factor_index(factor), fold_ln
        sizes = tuple(model.vocab.sizes)
        mcfg = model.cfg
        self._cfg = StepConfig(
            n_layers=mcfg.n_layers, d_model=mcfg.d_model, n_heads=mcfg.n_heads, d_head=mcfg.d_head,
            d_mlp=mcfg.mlp_width, n_ctx=8 * model.task.n_names, d_vocab=sizes[self.factor],
            d_vocab_out=sizes[self.factor], d_vocab_packed=n_packed(sizes), eps=model.ln_final.eps,
            normalization_type="LNPre" if fold_ln else "LN", device=str(model.device), attn_scale=math.sqrt(mcfg.d_head),
            step=step, factor=self.factor, factor_name=FACTORS[self.factor], factor_sizes=sizes)
        self.hook_state = HookPoint()
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(BlockView(block, fold_ln) for block in model.blocks)
        self.ln_final = LayerNormView(model.ln_final, fold_ln)
        self.setup()
        self._taps = dict(self.hook_dict)  # this view's hook points stand in for step ``step``'s
        nn.Module.train(self, False)  # the hook containers compute nothing: eval for good; the mode is the model's

    # ------------------------------------------------------------- mode, device
    def wrapped_model(self) -> nn.Module | None:
        """Whose mode this view has (``BorrowedMode``): the shared model's, so every step and view of it
        switches together (``require_eval_mode`` of TransformerLens's tools reads it)."""
        return self.__dict__.get("_model")

    @property
    def device(self) -> torch.device:
        return self._model.device

    @property
    def cfg(self) -> StepConfig:
        """TransformerLens's config fields for this step (``device`` follows the model when it moves)."""
        if self._cfg.device != str(self.device):
            self._cfg = replace(self._cfg, device=str(self.device))
        return self._cfg

    def __getattr__(self, name: str) -> Any:
        if name in MISSING:
            raise MissingAttribute(f"{type(self).__name__} has no {name}: {MISSING[name]}")
        return super().__getattr__(name)

    # ------------------------------------------------------------------ weights
    def _stack(self, part: str, name: str) -> Tensor:
        return torch.stack([getattr(getattr(block, part), name) for block in self.blocks])  # layer x [...]

    W_Q = property(lambda self: self._stack("attn", "W_Q"))  # [layer, head, d_model, d_head]
    W_K = property(lambda self: self._stack("attn", "W_K"))
    W_V = property(lambda self: self._stack("attn", "W_V"))
    W_O = property(lambda self: self._stack("attn", "W_O"))  # [layer, head, d_head, d_model]
    b_Q = property(lambda self: self._stack("attn", "b_Q"))  # [layer, head, d_head]
    b_K = property(lambda self: self._stack("attn", "b_K"))
    b_V = property(lambda self: self._stack("attn", "b_V"))
    b_O = property(lambda self: self._stack("attn", "b_O"))  # [layer, d_model]
    W_in = property(lambda self: self._stack("mlp", "W_in"))  # [layer, d_model, d_mlp]
    b_in = property(lambda self: self._stack("mlp", "b_in"))  # [layer, d_mlp]
    W_out = property(lambda self: self._stack("mlp", "W_out"))  # [layer, d_mlp, d_model]
    b_out = property(lambda self: self._stack("mlp", "b_out"))  # [layer, d_model]

    @property
    def W_E(self) -> Tensor:
        """The chosen factor's embedding table [d_vocab, d_model] (a position embeds as the sum of its four factors')."""
        return self._model.embed.W_E[self.factor].weight.detach()

    def _unembed(self) -> tuple[Tensor, Tensor]:
        head = self._model.unembed.W_U[self.factor]
        ln = self._model.ln_final
        W, b = head.weight.detach().T, head.bias.detach()  # [d_model, d_vocab], [d_vocab]
        if not self.fold_ln:
            return W, b
        return ln.weight.detach()[:, None] * W, b + ln.bias.detach() @ W

    W_U = property(lambda self: self._unembed()[0])  # [d_model, d_vocab]
    b_U = property(lambda self: self._unembed()[1])  # [d_vocab]

    def unembed(self, x: Tensor) -> Tensor:
        """The chosen factor's logits of a normalized residual: ``x @ W_U + b_U`` [..., d_vocab]."""
        return x @ self.W_U + self.b_U

    def tokens_to_residual_directions(self, tokens: int | str | Tensor) -> Tensor:
        """The unembedding direction of codes of the chosen factor: [..., d_model] (``W_U[:, tokens]``)."""
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        return self.W_U.T[torch.as_tensor(tokens, device=self.W_U.device).long()]

    # ------------------------------------------------------------------- tokens
    def code_labels(self, factor: int | str | None = None) -> list[str]:
        """The label of every code of ``factor`` (default: the view's), what ``to_single_token`` reads."""
        f = self.factor if factor is None else factor_index(factor)
        v = self._model.vocab
        if f == 0:
            return list(SYNTAX_NAMES)
        if f == 1:
            return [f"x_{i}" for i in range(v.n_names)] + ["N/A"]
        if f == 2:
            return list(ALL_OPERATIONS[:v.n_ops]) + ["N/A"]
        return [str(i) for i in range(v.n_values)] + ["N/A", "?"]

    def to_single_token(self, string: str) -> int:
        """The code of ``string`` in the chosen factor (a value ``"17"``, ``"?"`` for empty, ``"+"``, ``"x_3"``)."""
        labels = self.code_labels()
        if string not in labels:
            raise WorkbenchError(f"'{string}' is not a code of the {FACTORS[self.factor]} factor; its codes are "
                                 f"{labels[:6] + ['...'] if len(labels) > 6 else labels}")
        return labels.index(string)

    def to_tokens(self, problems, *, seed: int = 0, **_: Any) -> Tensor:
        """Packed token ids [batch, pos] of one problem (text or parsed) or a list of them, right-padded.

        TransformerLens's tokenizer options (``prepend_bos``, ``padding_side``, ...) have no meaning here
        and are ignored: there is no BOS token and padding is on the right. The user's variable names
        are remembered for ``to_str_tokens`` and ``to_string`` of these ids.
        """
        return pack(self._hm.to_tokens(problems, seed=seed), self.cfg.factor_sizes)

    def _factored(self, tokens) -> Tensor:
        """[batch, pos, factor] tokens of packed ids, factored tokens or problems."""
        if isinstance(tokens, Tensor) and tokens.ndim <= 2:
            ids = tokens[None] if tokens.ndim == 1 else tokens  # [batch, pos]
            return unpack(ids, self.cfg.factor_sizes)
        if isinstance(tokens, Tensor):
            return tokens.long()
        return unpack(self.to_tokens(tokens), self.cfg.factor_sizes)

    def to_str_tokens(self, input, **_: Any) -> list[str] | list[list[str]]:
        """A label per position (``a=?``, ``+``, ``=``, ``SEP``), with the user's variable names where known.

        Names are known for text given here and for ids made by this view's ``to_tokens`` from text;
        otherwise variables show as the model's pool names (``x_17``). A batch gives one list per row.
        """
        if isinstance(input, str):
            input = self.to_tokens(input)
        elif isinstance(input, list):
            return [self.to_str_tokens(item) for item in input]
        tokens = self._factored(input)
        vocab = self._model.vocab
        rows = []
        for row in tokens.cpu():
            names = self._hm.names.names(row, self.cfg.factor_sizes)
            n = int((row[:, 0] != vocab.pad_token()[0]).sum())
            rows.append([token_label(code, vocab, names) for code in row[:n].tolist()])
        squeeze = isinstance(input, Tensor) and (input.ndim == 1 or (input.ndim == 2 and input.shape[0] == 1))
        return rows[0] if squeeze or len(rows) == 1 else rows

    def to_string(self, tokens) -> str | list[str]:
        """The problem text of packed or factored tokens (one ``name = expression`` line per equation)."""
        factored = self._factored(tokens).cpu()
        texts = [sequence_text(row.tolist(), self._model.vocab, self._hm.names.names(row, self.cfg.factor_sizes))
                 for row in factored]
        return texts[0] if len(texts) == 1 else texts

    # ------------------------------------------------------------------ forward
    def forward(self, input, return_type: str | None = "logits", *, lengths: Tensor | None = None,
                **options: Any) -> Tensor | None:
        """Run steps 0..step from the input state; step ``step``'s sites pass this view's hook points.

        Returns the chosen factor's logits of that step [batch, pos, d_vocab] (``return_type="logits"``)
        or None. Autograd follows the caller's mode, as in TransformerLens; gradients reach step
        ``step`` only (the bottleneck's argmax stands before it). TransformerLens's tokenizer options
        (``prepend_bos``, ``padding_side``) are ignored; the loop's own run options are refused.
        """
        loop_options = sorted(set(options) & {"n_steps", "max_steps", "min_steps", "grad"})
        if loop_options:
            raise WorkbenchError(f"a step view always runs steps 0..{self.step}; {loop_options} are options of "
                                 "the whole loop: run hm(tokens, ...) instead")
        if return_type not in ("logits", None):
            raise WorkbenchError(f"return_type={return_type!r}: this model has no next-token loss; take "
                                 "return_type='logits' and compute a metric from them")
        tokens = self._factored(input)
        tokens, lengths = as_tensor_input(tokens, self._model.task, lengths)
        with MODEL_LOCK:
            logits = self._hm.run_steps(tokens, lengths, self.step + 1, None, 0, "logits", always=False,
                                   override={self.step: self._taps})
        return None if return_type is None else logits[self.factor]

    def hooks(self, fwd_hooks=(), bwd_hooks=(), reset_hooks_end: bool = True, clear_contexts: bool = False):
        """TransformerLens's ``hooks`` context; a name that is no hook point here raises a ``WorkbenchError``."""
        for name, _ in list(fwd_hooks) + list(bwd_hooks):
            if isinstance(name, str) and name not in self.hook_dict:
                raise WorkbenchError(self._unknown(name))
        return super().hooks(list(fwd_hooks), list(bwd_hooks), reset_hooks_end, clear_contexts)

    def _unknown(self, name: str) -> str:
        if name.startswith("loop."):
            return (f"'{name}' is a name of the whole loop; this view is step {self.step}: drop the "
                    f"'loop.{self.step}.' prefix, or hook the loop model itself")
        if name.endswith(("hook_scale", "hook_normalized")):
            return (f"'{name}': the LayerNorms run inside the shared blocks without hook points; hook the "
                    "residual they read (hook_resid_pre / hook_resid_mid); caches derive their scales")
        return f"'{name}' is not a hook point of this model; its hook points are {list(self.hook_dict)[:4]} ..."

    def run_with_hooks(self, *model_args: Any, fwd_hooks=(), bwd_hooks=(), reset_hooks_end: bool = True,
                       clear_contexts: bool = False, **model_kwargs: Any):
        """TransformerLens's ``run_with_hooks``, under the model lock."""
        with MODEL_LOCK:
            return super().run_with_hooks(*model_args, fwd_hooks=fwd_hooks, bwd_hooks=bwd_hooks,
                                          reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts, **model_kwargs)

    def run_with_cache(self, *model_args: Any, names_filter=None, device=None, remove_batch_dim: bool = False,
                       incl_bwd: bool = False, reset_hooks_end: bool = True, clear_contexts: bool = False,
                       pos_slice=None, metric=None, return_cache_object: bool = True,
                       **model_kwargs: Any) -> tuple[Any, ActivationCache | dict]:
        """Run and cache this step: ``(logits, ActivationCache)`` with the LayerNorm scales derived.

        ``incl_bwd=True`` backpropagates ``metric(logits)`` (a scalar; TransformerLens would need
        ``return_type="loss"``, which this model has no counterpart of) and adds ``*_grad`` entries.
        """
        listed = [names_filter] if isinstance(names_filter, str) else names_filter if isinstance(names_filter, (list, tuple)) else []
        for name in listed:
            if name not in self.hook_dict:
                raise WorkbenchError(self._unknown(name))
        with MODEL_LOCK:
            out, cache = cache_run(self, model_args, model_kwargs, names_filter=names_filter, device=device,
                                   remove_batch_dim=remove_batch_dim, incl_bwd=incl_bwd, metric=metric,
                                   pos_slice=pos_slice, reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts)
        cache = with_ln_scales(cache, self.cfg.n_layers, self.cfg.eps)
        return out, (ActivationCache(cache, self, has_batch_dim=not remove_batch_dim) if return_cache_object else cache)

    def __repr__(self) -> str:
        return (f"StepView(step {self.step} of a {self.cfg.n_layers}-layer looped model, "
                f"factor '{self.cfg.factor_name}', normalization {self.cfg.normalization_type})")


__all__ = ["StepView", "StepConfig", "MissingAttribute", "factor_index", "with_ln_scales"]

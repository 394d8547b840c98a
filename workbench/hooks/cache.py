"""``LoopCache``: every step's activations of one run, and helpers that stack them with the step axis first.

TransformerLens's ``ActivationCache`` describes one forward pass of one block stack; a looped run is
many. ``cache.at_step(t)`` is the ``ActivationCache`` of step t, with TransformerLens's own names
(``blocks.1.attn.hook_pattern``), over ``hm.at_step(t)``: its ``decompose_resid``,
``accumulated_resid``, ``stack_head_results``, ``logit_attrs`` and ``apply_ln_to_stack`` work
as on any TransformerLens model. Across steps, ``stack``/``pattern``/``resid`` put the step axis first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.errors import WorkbenchError
from workbench.hooks.names import hook_name, parse_hook_name

if TYPE_CHECKING:
    from transformer_lens import ActivationCache

    from workbench.hooks.tl_wrapper import HookedLooped

GRAD = "_grad"

#: ActivationCache analyses that are about one step: the one-line error says how to reach them
PER_STEP = ("decompose_resid", "accumulated_resid", "stack_head_results", "logit_attrs", "apply_ln_to_stack",
            "get_full_resid_decomposition", "compute_head_results", "stack_neuron_results", "logit_lens",
            "stack_activation", "get_neuron_results")


class MissingAttribute(WorkbenchError, AttributeError):
    """An attribute TransformerLens or nnsight users expect that is elsewhere here; ``hasattr`` is False."""


def _step(name: str) -> int:
    """The step of a cache key (``<hook name>`` or ``<hook name>_grad``)."""
    return parse_hook_name(name.removesuffix(GRAD)).step


class LoopCache(dict):
    """A ``{hook name: tensor}`` dict of one run (what ``HookedLooped.run_with_cache`` returns).

    Plain lookups work as in TransformerLens (``cache["loop.3.blocks.1.attn.hook_pattern"]``, and
    ``..._grad`` after ``incl_bwd=True``); the helpers stack one site over every step, step first.

    >>> cache = LoopCache({hook_name(t, "attn.hook_pattern", 0): torch.full((1, 2, 3, 3), float(t)) for t in range(4)})
    >>> cache.n_steps, tuple(cache.pattern(0).shape)
    (4, (4, 1, 2, 3, 3))
    """

    def __init__(self, data: Mapping[str, Tensor] = (), *, n_layers: int | None = None, model: "HookedLooped | None" = None,
                 has_batch_dim: bool = True) -> None:
        super().__init__(data)
        self.n_layers = n_layers
        self.model = model
        self.has_batch_dim = has_batch_dim

    @property
    def n_steps(self) -> int:
        """1 + the latest step with a cached activation (0 when empty)."""
        return 1 + max((_step(name) for name in self), default=-1)

    def steps(self, site: str, layer: int | None = None, *, factor: int | None = None) -> list[int]:
        """The steps at which ``site`` was cached."""
        return [t for t in range(self.n_steps) if hook_name(t, site, layer, factor=factor) in self]

    def stack(self, site: str, layer: int | None = None, *, factor: int | None = None, grad: bool = False) -> Float[Tensor, "step ..."]:
        """``site`` at every step, stacked: [step, ...] (e.g. [step, batch, pos, d_model] for a residual).

        ``grad=True`` stacks the cached gradients instead (only the steps the metric depended on have any).
        """
        n = self.n_steps
        names = [hook_name(t, site, layer, factor=factor) + (GRAD if grad else "") for t in range(n)]
        if grad:
            names = [name for name in names if name in self]
        missing = [name for name in names if name not in self]
        if missing or not names:
            first = missing[0] if missing else hook_name(0, site, layer, factor=factor) + (GRAD if grad else "")
            how = "run_with_cache(..., incl_bwd=True, metric=...)" if grad else "run_with_cache with a names_filter that keeps it"
            raise WorkbenchError(f"the cache has no '{first}'; {how}")
        return torch.stack([self[name] for name in names])  # step x [...]

    def stack_layers(self, site: str) -> Float[Tensor, "step layer ..."]:
        """A block ``site`` at every step and layer: [step, layer, ...]."""
        if self.n_layers is None:
            raise WorkbenchError("this cache does not know the number of layers; use stack(site, layer) per layer")
        return torch.stack([self.stack(site, layer) for layer in range(self.n_layers)], dim=1)

    def pattern(self, layer: int) -> Float[Tensor, "step batch head query key"]:
        """Attention patterns of ``layer`` at every step."""
        return self.stack("attn.hook_pattern", layer)

    def resid(self, layer: int, where: str = "post") -> Float[Tensor, "step batch pos d_model"]:
        """The residual stream of ``layer`` (``pre``, ``mid`` or ``post``) at every step."""
        return self.stack(f"hook_resid_{where}", layer)

    def states(self) -> Int[Tensor, "step batch pos factor"]:
        """The state each step read: [step, batch, pos, factor]."""
        return self.stack("hook_state")

    def outputs(self) -> Int[Tensor, "step batch pos factor"]:
        """The state each step wrote (the bottleneck codes): [step, batch, pos, factor]."""
        return self.stack("hook_bottleneck")

    # ------------------------------------------------------- TransformerLens
    def at_step(self, step: int, factor: int | str = "value", *, model: "HookedLooped | None" = None,
                fold_ln: bool = True) -> "ActivationCache":
        """Step ``step``'s activations as a TransformerLens ``ActivationCache`` over ``hm.at_step(step, factor)``.

        Keys lose their ``loop.{step}.`` prefix (``blocks.1.attn.hook_pattern``, ``hook_embed``) and the
        LayerNorm scales are derived from the residuals, so ``decompose_resid``, ``accumulated_resid``,
        ``stack_head_results``, ``logit_attrs`` (through ``factor``'s head) and ``apply_ln_to_stack``
        work. ``model`` is needed only for a cache that was not made by ``run_with_cache``.
        """
        from transformer_lens import ActivationCache

        from workbench.hooks.step_view import with_ln_scales

        model = model if model is not None else self.model
        if model is None:
            raise WorkbenchError("this cache does not know its model: pass at_step(t, model=hooked(model))")
        if not 0 <= step < self.n_steps:
            raise WorkbenchError(f"the cache holds steps 0..{self.n_steps - 1}, not step {step}")
        view = model.at_step(step, factor, fold_ln=fold_ln)
        prefix = f"loop.{step}."
        local = {name[len(prefix):]: value for name, value in self.items() if name.startswith(prefix)}
        return ActivationCache(with_ln_scales(local, view.cfg.n_layers, view.cfg.eps), view, has_batch_dim=self.has_batch_dim)

    def to(self, device: str | torch.device) -> "LoopCache":
        """The cache with every tensor on ``device``."""
        return LoopCache({k: v.to(device) for k, v in self.items()}, n_layers=self.n_layers, model=self.model,
                         has_batch_dim=self.has_batch_dim)

    def remove_batch_dim(self) -> "LoopCache":
        """The cache of a one-problem run without its batch axis (TransformerLens's ``remove_batch_dim``)."""
        if not self.has_batch_dim:
            return self
        sizes = {v.shape[0] for v in self.values() if v.ndim}
        if sizes - {1}:
            raise WorkbenchError(f"remove_batch_dim needs a batch of one; this cache has batch {max(sizes)}: index it instead")
        return LoopCache({k: v[0] if v.ndim else v for k, v in self.items()}, n_layers=self.n_layers, model=self.model,
                         has_batch_dim=False)

    def __getattr__(self, name: str) -> Any:
        if name in PER_STEP:
            raise MissingAttribute(f"{name} reads one forward pass and a loop run is many: "
                                 f"use cache.at_step(t).{name}(...) for step t")
        raise AttributeError(f"'LoopCache' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"LoopCache({len(self)} activations, {self.n_steps} steps)"


def stack_steps(cache: Mapping[str, Tensor], site: str, layer: int | None = None, *, factor: int | None = None) -> Float[Tensor, "step ..."]:
    """``site`` stacked over every step of any ``{name: tensor}`` cache: [step, ...]."""
    return LoopCache(cache).stack(site, layer, factor=factor)


def head_pattern(cache: Mapping[str, Tensor], layer: int) -> Float[Tensor, "step batch head query key"]:
    """Attention patterns of ``layer`` at every step of any ``{name: tensor}`` cache."""
    return LoopCache(cache).pattern(layer)


__all__ = ["LoopCache", "MissingAttribute", "stack_steps", "head_pattern"]

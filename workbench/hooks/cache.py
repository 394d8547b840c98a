"""``LoopCache``: every step's activations of one run, and helpers that stack them with the step axis first."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from jaxtyping import Float, Int
from torch import Tensor

from workbench.errors import WorkbenchError
from workbench.hooks.names import hook_name, parse_hook_name


class LoopCache(dict):
    """A ``{hook name: tensor}`` dict of one run (what ``HookedLooped.run_with_cache`` returns).

    Plain lookups work as in TransformerLens (``cache["loop.3.blocks.1.attn.hook_pattern"]``); the
    helpers stack one site over every step, step first.

    >>> cache = LoopCache({hook_name(t, "attn.hook_pattern", 0): torch.full((1, 2, 3, 3), float(t)) for t in range(4)})
    >>> cache.n_steps, tuple(cache.pattern(0).shape)
    (4, (4, 1, 2, 3, 3))
    """

    def __init__(self, data: Mapping[str, Tensor] = (), *, n_layers: int | None = None) -> None:
        super().__init__(data)
        self.n_layers = n_layers

    @property
    def n_steps(self) -> int:
        """1 + the latest step with a cached activation (0 when empty)."""
        return 1 + max((parse_hook_name(name).step for name in self), default=-1)

    def steps(self, site: str, layer: int | None = None, *, factor: int | None = None) -> list[int]:
        """The steps at which ``site`` was cached."""
        return [t for t in range(self.n_steps) if hook_name(t, site, layer, factor=factor) in self]

    def stack(self, site: str, layer: int | None = None, *, factor: int | None = None) -> Tensor:
        """``site`` at every step, stacked: [step, ...] (e.g. [step, batch, pos, d_model] for a residual)."""
        n = self.n_steps
        names = [hook_name(t, site, layer, factor=factor) for t in range(n)]
        missing = [name for name in names if name not in self]
        if missing or not n:
            first = missing[0] if missing else hook_name(0, site, layer, factor=factor)
            raise WorkbenchError(f"the cache has no '{first}'; run run_with_cache with a names_filter that keeps it")
        return torch.stack([self[name] for name in names])  # step x [...]

    def stack_layers(self, site: str) -> Tensor:
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

    def __repr__(self) -> str:
        return f"LoopCache({len(self)} activations, {self.n_steps} steps)"


def stack_steps(cache: Mapping[str, Tensor], site: str, layer: int | None = None, *, factor: int | None = None) -> Tensor:
    """``site`` stacked over every step of any ``{name: tensor}`` cache: [step, ...]."""
    return LoopCache(cache).stack(site, layer, factor=factor)


def head_pattern(cache: Mapping[str, Tensor], layer: int) -> Float[Tensor, "step batch head query key"]:
    """Attention patterns of ``layer`` at every step of any ``{name: tensor}`` cache."""
    return LoopCache(cache).pattern(layer)


__all__ = ["LoopCache", "stack_steps", "head_pattern"]

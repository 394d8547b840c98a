r"""An nnsight model over the per-step hook points: ``nnsight_model(model)``.

nnsight sees one module per (step, site) — ``nm.loop[3].blocks[1].attn.hook_pattern`` — the same
containers as the TransformerLens wrapper, so each is called once per run and none of nnsight's
iteration traps apply (``tracer.iter``/``all()`` are never needed: a step is an index, not a call
count). The shared blocks themselves are not in the nnsight tree, and the plain model is not
instrumented.

What is left of the traps, and how the helpers avoid them:
- inside one trace, modules must be read in the order the run reaches them (a later step after an
  earlier one): ``save`` and ``run`` sort names with ``names.forward_order``;
- a trace that reads a step the run never reaches fails: the helpers raise ``min_steps`` to the
  latest step they name (a raw trace should pass ``n_steps=`` or ``min_steps=``);
- nnsight is not thread-safe: the helpers hold ``model_lock``; hold it yourself around a raw trace.

>>> from workbench.hooks import model_lock
>>> from workbench.model.config import ModelConfig
>>> from workbench.task.config import TaskConfig
>>> model = LoopedModel(ModelConfig(n_layers=2, n_heads=2, d_model=16), TaskConfig(n_names=8))
>>> nm = nnsight_model(model)
>>> _, saved = nm.save("a = 3\nb = a + a", ["loop.2.blocks.1.attn.hook_pattern"], n_steps=3)
>>> list(saved)
['loop.2.blocks.1.attn.hook_pattern']
>>> tokens = nm.hooked.to_tokens("a = 3\nb = a + a")
>>> with model_lock(), nm.trace(tokens, n_steps=3):  # a raw trace: hold the lock, read in forward order
...     pattern = nm.loop[2].blocks[1].attn.hook_pattern.output.save()
>>> torch.equal(pattern, saved["loop.2.blocks.1.attn.hook_pattern"])
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import nnsight
import torch
from nnsight import NNsight
from torch import Tensor, nn

from workbench.errors import WorkbenchError
from workbench.hooks.cache import LoopCache
from workbench.hooks.guard import MODEL_LOCK
from workbench.hooks.inputs import as_tensor_input
from workbench.hooks.names import forward_order, parse_hook_name, step_of
from workbench.hooks.tl_wrapper import HookedLooped, hooked
from workbench.model.looped import LoopedModel


class LoopView(nn.Module):
    """What nnsight wraps: the per-step hook containers (``loop``) and a forward over the shared model."""

    def __init__(self, hooked_model: HookedLooped) -> None:
        super().__init__()
        object.__setattr__(self, "hooked", hooked_model)  # not a submodule: nnsight stays off the weights
        self.loop = hooked_model.loop

    def forward(self, tokens, lengths: Tensor | None = None, n_steps: int | None = None, max_steps: int | None = None,
                min_steps: int = 0, return_type: str = "logits") -> Any:
        with torch.no_grad():
            return self.hooked._run(tokens, lengths, n_steps, max_steps, min_steps, return_type, always=True)


class LoopedNNsight:
    """nnsight access to every loop step; attribute lookups fall through to the nnsight model (``.loop``)."""

    def __init__(self, model: LoopedModel | HookedLooped) -> None:
        self.hooked = hooked(model)
        self.view = LoopView(self.hooked)
        self.nn = NNsight(self.view)
        self._wrapped_steps = len(self.hooked.loop)

    def __getattr__(self, name: str) -> Any:
        if name in ("hooked", "view", "nn", "_wrapped_steps"):
            raise AttributeError(name)
        return getattr(self.nn, name)

    def ensure_steps(self, n_steps: int) -> None:
        """Give steps ``0..n_steps-1`` hook points and nnsight envoys."""
        self.hooked.ensure_steps(n_steps)
        if len(self.hooked.loop) != self._wrapped_steps:
            self.nn._update(self.view)
            self._wrapped_steps = len(self.hooked.loop)

    def _prepare(self, tokens, run: dict, names: Iterable[str]) -> dict:
        """Size the hook points for this run; raise ``min_steps`` so the run reaches every named step."""
        latest = max((step_of(n) for n in names), default=-1)
        run = dict(run)
        if latest >= 0 and run.get("n_steps") is None and self.hooked.cfg.looped:
            run["min_steps"] = max(run.get("min_steps", 0), latest + 1)
        elif latest >= 0 and run.get("n_steps") is not None and latest >= run["n_steps"]:
            raise WorkbenchError(f"step {latest} is never reached by a run of n_steps={run['n_steps']}")
        tok, _ = as_tensor_input(tokens, self.hooked.task, run.get("lengths"))
        most, _ = self.hooked.step_range(tok, run.get("n_steps"), run.get("max_steps"), run.get("min_steps", 0))
        self.ensure_steps(max(most, latest + 1))
        return run

    def trace(self, tokens, **run: Any):
        """An nnsight trace of one run (``n_steps``, ``max_steps``, ``min_steps``, ``lengths`` as in
        ``HookedLooped.forward``); reach modules as ``nm.loop[t].blocks[l].attn.hook_pattern``.

        Read modules in forward order and make the run reach every step you read (``n_steps=``).
        """
        run = self._prepare(tokens, run, ())
        if run.get("n_steps") is not None:
            self.ensure_steps(run["n_steps"])
        return self.nn.trace(tokens, **run)

    def step(self, t: int):
        """The nnsight envoy of loop step ``t`` (``.hook_state``, ``.blocks[l].attn.hook_pattern``, ...)."""
        self.ensure_steps(t + 1)
        return self.nn.loop[t]

    def envoy(self, name: str):
        """The nnsight envoy of a full hook name (``loop.3.blocks.1.attn.hook_pattern``)."""
        s = parse_hook_name(name)
        self.ensure_steps(s.step + 1)
        return self.nn.get(name)

    def save(self, tokens, names: Iterable[str] | Callable[[str], bool] | None = None, **run: Any) -> tuple[Any, LoopCache]:
        """Run once and save activations: ``(logits, LoopCache)``, like ``run_with_cache``.

        ``names``: full hook names, a filter on them, or None for every site of every step the run reaches.
        """
        return self.run(tokens, save=names, **run)

    def run(self, tokens, *, set: Mapping[str, Tensor | Callable[[Tensor], Tensor]] | None = None,
            save: Iterable[str] | Callable[[str], bool] | None = (), **run: Any) -> tuple[Any, LoopCache]:
        """One trace: replace the activations in ``set`` (a tensor, or a function of the clean one) and
        save those in ``save`` (names, a filter, or None for all); returns ``(output, LoopCache)``.

        Names are visited in forward order whatever order they are given in; a saved name that is
        also set is saved after the edit.
        """
        set = dict(set or {})
        for name in set:
            parse_hook_name(name)
        listed = [] if save is None or callable(save) else list(save)
        with MODEL_LOCK:
            run = self._prepare(tokens, run, list(set) + listed)
            if save is None or callable(save):
                keep = save if callable(save) else (lambda name: True)
                wanted = [n for n in self.hooked.hook_dict if keep(n)]
                return self._cached(tokens, run, set, wanted)
            return self._ordered(tokens, run, set, listed)

    def _ordered(self, tokens, run: dict, set: dict, names: list[str]) -> tuple[Any, LoopCache]:
        for name in names:
            parse_hook_name(name)
        order = sorted({*set, *names}, key=forward_order)
        wanted = frozenset(names)
        with self.nn.trace(tokens, **run):
            saved = nnsight.save({})
            for name in order:
                envoy = self.nn.get(name)
                if name in set:
                    value = set[name]
                    envoy.output = value(envoy.output) if callable(value) else value
                if name in wanted:
                    saved[name] = envoy.output.detach()
            output = self.nn.output.save()
        return output, LoopCache(saved, n_layers=self.hooked.cfg.n_layers)

    def _cached(self, tokens, run: dict, set: dict, names: list[str]) -> tuple[Any, LoopCache]:
        """Save many names with nnsight's order-free cache (steps the run never reaches are left out)."""
        order = sorted(set, key=forward_order)
        with self.nn.trace(tokens, **run) as tracer:
            cache = tracer.cache(modules=[self.nn.get(n) for n in names])
            for name in order:
                envoy = self.nn.get(name)
                value = set[name]
                envoy.output = value(envoy.output) if callable(value) else value
            output = self.nn.output.save()
        saved = {}
        for key in cache.keys():
            entry = cache[key]
            if entry.output is not None:
                saved[key.removeprefix("model.")] = entry.output
        return output, LoopCache(saved, n_layers=self.hooked.cfg.n_layers)

    def __repr__(self) -> str:
        return f"LoopedNNsight({self.hooked!r})"


def nnsight_model(model: LoopedModel | HookedLooped) -> LoopedNNsight:
    """An nnsight model of ``model`` whose trace reaches every step: ``nm.loop[t].blocks[l].attn.hook_pattern``."""
    return LoopedNNsight(model)


__all__ = ["LoopedNNsight", "LoopView", "nnsight_model"]

r"""An nnsight model over the per-step hook points: ``nnsight_model(model)``.

nnsight sees two views of the same run:

- **one module per (step, site)**: ``nm.loop[3].blocks[1].attn.hook_pattern``, the same containers
  as the TransformerLens wrapper, each called once per run. A step is an index, so none of nnsight's
  iteration traps apply;
- **one module per site, called once per step**: ``nm.blocks[1].attn.hook_pattern``, what a shared
  block looks like to nnsight. Read it as nnsight users read any looped or generating model:
  ``for step in tracer.iter[:4]: ...`` (iteration i is loop step i), ``tracer.all()``; outside an
  iteration it means step 0. An edit there applies after the step's own module.

Several inputs go into one trace as nnsight's invokes (``with nm.trace() as tr: with tr.invoke(clean):
... with tr.invoke(corrupted): ...``): their rows are batched into one run (right-padded to the
longest, so positions counted from the left keep their meaning), and each invoke sees its own rows.
Hand a value from one invoke to another through ``tr.barrier(2)``, as in nnsight's own examples.

Gradients flow when asked: ``nm.trace(tokens, grad=True)``, then nnsight's usual
``with loss.backward(): g = envoy.output.grad.save()``. They reach the step that produced the loss
only: the discrete bottleneck (an argmax) stands between two steps.

What is left of the traps, and how the helpers avoid them:
- inside one trace (or one iteration), modules must be read in the order the run reaches them:
  ``save`` and ``run`` sort names with ``names.forward_order``;
- a trace that reads a step the run never reaches fails: the helpers raise ``min_steps`` to the
  latest step they name (a raw trace should pass ``n_steps=`` or ``min_steps=``);
- code after an unbounded ``tracer.iter[:]`` / ``tracer.all()`` never runs (nnsight): bound it;
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

import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import nnsight
import torch
from nnsight import NNsight
from nnsight.intervention.tracer import InterleavingTracer
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from workbench.errors import WorkbenchError
from workbench.hooks.cache import LoopCache
from workbench.hooks.guard import MODEL_LOCK
from workbench.hooks.inputs import as_tensor_input
from workbench.hooks.names import forward_order, parse_hook_name, step_of
from workbench.hooks.points import StepHooks
from workbench.hooks.tl_wrapper import HookedLooped, hooked
from workbench.model.looped import LoopedModel

RUN_KEYS = ("lengths", "n_steps", "max_steps", "min_steps", "return_type", "grad")


class LoopView(StepHooks):
    """What nnsight wraps: the shared per-site hook modules (its own fields), the per-step ones (``loop``)
    and a forward over the shared model."""

    def __init__(self, hooked_model: HookedLooped) -> None:
        super().__init__(hooked_model.cfg.n_layers, hooked_model.n_factors)
        object.__setattr__(self, "hooked", hooked_model)  # not a submodule: nnsight stays off the weights
        points = {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}
        self._shared = points
        self.loop = hooked_model.loop
        self.eval()

    def forward(self, tokens, lengths: Tensor | None = None, n_steps: int | None = None, max_steps: int | None = None,
                min_steps: int = 0, return_type: str = "logits", grad: bool = False) -> Any:
        with torch.set_grad_enabled(grad):
            return self.hooked.run_steps(tokens, lengths, n_steps, max_steps, min_steps, return_type, always=True,
                                    shared=self._shared)


class LoopTracer(InterleavingTracer):
    """nnsight's tracer, with one-line ``WorkbenchError``s for what goes wrong on a loop.

    - a backward pass in a trace run without gradients: open it with ``grad=True``;
    - a per-step module (``nm.loop[t]``, called once per run) read inside ``tracer.iter[k]``, k > 0,
      where nnsight only warns that it was never reached: read ``nm.blocks[l]...`` there, or
      ``nm.loop[t]`` outside the iteration;
    - a per-step module the run had passed (read out of forward order) or never reaches (n_steps).
    """

    def __exit__(self, exc_type, exc_value, exc_traceback) -> bool:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = super().__exit__(exc_type, exc_value, exc_traceback)
            except Exception as error:  # nnsight's OutOfOrderError is a bare Exception
                if isinstance(error, RuntimeError) and "does not require grad" in str(error):
                    raise WorkbenchError("this trace ran without gradients: open it as nm.trace(..., grad=True) "
                                         "to call .backward() inside") from None
                found = _PASSED.search(str(error))
                if found:
                    raise WorkbenchError(f"'{found[1]}' was read after the run had passed it: read modules in forward "
                                         f"order, and pass n_steps= (or min_steps=) so the run reaches step {found[2]}") from None
                raise
        for warning in caught:
            found = _UNREACHED.search(str(warning.message))
            if found:
                raise WorkbenchError(f"'{found[1]}' runs once per run, so iteration {found[3]} of tracer.iter never "
                                     f"reaches it: inside tracer.iter read the per-iteration modules (nm.{_indexed(found[2])}), "
                                     f"outside it nm.loop[t]")
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return result


def _indexed(path: str) -> str:
    """``blocks.0.attn.hook_z`` -> ``blocks[0].attn.hook_z`` (how an envoy is written)."""
    return re.sub(r"\.(\d+)", r"[\1]", path)


#: nnsight's messages about a module path (``model.loop.3.blocks.1.attn.hook_pattern.output.i1``)
_UNREACHED = re.compile(r"'model\.(loop\.\d+\.(\S+?))\.(?:output|input|inputs)\.i([1-9]\d*)' was never reached")
_PASSED = re.compile(r"'model\.(loop\.(\d+)\.\S+?)\.(?:output|input|inputs)\.i\d+' was requested but the model already ran past it")


class BatchedNNsight(NNsight):
    """``NNsight`` that batches several invokes' inputs into one run of the loop (rows stacked, right-padded)."""

    def __init__(self, view: LoopView, owner: "LoopedNNsight") -> None:
        super().__init__(view)
        object.__setattr__(self, "_owner", owner)

    def _batch_size(self, *inputs: Any, **kwargs: Any) -> int:
        if not inputs:
            return 0  # a trace's own run options (n_steps=, grad=): no rows
        tokens, _ = as_tensor_input(inputs[0], self._owner.hooked.task, kwargs.get("lengths"))
        return tokens.shape[0]

    def _batch(self, invokes: list[tuple], fn: Any) -> tuple:
        if not invokes:
            return tuple(), {}
        task, device = self._owner.hooked.task, self._owner.hooked.device
        pairs = [tuple(x.to(device) for x in as_tensor_input(args[0], task, kwargs.get("lengths"))) for args, kwargs in invokes]
        width = max(tokens.shape[1] for tokens, _ in pairs)
        pad = torch.tensor(self._owner.hooked.vocab.pad_token(), device=device)
        padded = [torch.cat([tokens, pad.expand(tokens.shape[0], width - tokens.shape[1], -1)], 1) for tokens, _ in pairs]
        tokens, lengths = torch.cat(padded), torch.cat([lengths for _, lengths in pairs])  # [batch, pos, factor], [batch]
        options = {k: v for _, kwargs in invokes for k, v in kwargs.items() if k != "lengths"}
        self._owner._size({**self._owner._pending, **options}, tokens, lengths)
        return (tokens,), {**options, "lengths": lengths}


class LoopedNNsight:
    """nnsight access to every loop step; attribute lookups fall through to the nnsight model (``.loop``, ``.blocks``)."""

    def __init__(self, model: LoopedModel | HookedLooped) -> None:
        self.hooked = hooked(model)
        self.view = LoopView(self.hooked)
        self._pending: dict = {}
        self.nn = BatchedNNsight(self.view, self)
        self._wrapped_steps = len(self.hooked.loop)

    def __getattr__(self, name: str) -> Any:
        if name in ("hooked", "view", "nn", "_wrapped_steps", "_pending"):
            raise AttributeError(name)
        return getattr(self.nn, name)

    def ensure_steps(self, n_steps: int) -> None:
        """Give steps ``0..n_steps-1`` hook points and nnsight envoys."""
        self.hooked.ensure_steps(n_steps)
        if len(self.hooked.loop) != self._wrapped_steps:
            self.nn._update(self.view)
            self._wrapped_steps = len(self.hooked.loop)

    def _size(self, run: dict, tokens, lengths=None) -> None:
        """Give every step a run of ``tokens`` may take hook points and envoys."""
        tok, _ = as_tensor_input(tokens, self.hooked.task, lengths)
        most, _ = self.hooked.step_range(tok, run.get("n_steps"), run.get("max_steps"), run.get("min_steps", 0))
        self.ensure_steps(most)

    def _prepare(self, tokens, run: dict, names: Iterable[str]) -> dict:
        """Size the hook points for this run; raise ``min_steps`` so the run reaches every named step."""
        latest = max((step_of(n) for n in names), default=-1)
        run = dict(run)
        if latest >= 0 and run.get("n_steps") is None and self.hooked.cfg.looped:
            run["min_steps"] = max(run.get("min_steps", 0), latest + 1)
        elif latest >= 0 and run.get("n_steps") is not None and latest >= run["n_steps"]:
            raise WorkbenchError(f"step {latest} is never reached by a run of n_steps={run['n_steps']}")
        self._size(run, tokens, run.get("lengths"))
        self.ensure_steps(latest + 1)
        return run

    def trace(self, *inputs: Any, **run: Any):
        """An nnsight trace of one run (``n_steps``, ``max_steps``, ``min_steps``, ``lengths``, ``return_type``
        as in ``HookedLooped.forward``; ``grad=True`` keeps autograd for ``.backward()``).

        ``nm.trace(tokens)`` runs one input; ``nm.trace()`` with ``tr.invoke(tokens)`` blocks batches
        several. Reach modules as ``nm.loop[t].blocks[l].attn.hook_pattern`` (or, per iteration,
        ``nm.blocks[l].attn.hook_pattern``); read them in forward order, and make the run reach every
        step you read (``n_steps=``).
        """
        unknown = set(run) - set(RUN_KEYS)
        if unknown or len(inputs) > 1:
            raise WorkbenchError(f"trace takes the tokens and the run options {list(RUN_KEYS)}; got "
                                 f"{len(inputs)} inputs and {sorted(unknown)}")
        if inputs:
            run = self._prepare(inputs[0], run, ())
        elif run.get("n_steps") is not None:
            self.ensure_steps(run["n_steps"])
        self._pending = dict(run)
        return self.nn.trace(*inputs, tracer_cls=LoopTracer, **run)

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
            self._pending = dict(run)
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
        return output, LoopCache(saved, n_layers=self.hooked.cfg.n_layers, model=self.hooked)

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
        return output, LoopCache(saved, n_layers=self.hooked.cfg.n_layers, model=self.hooked)

    def __repr__(self) -> str:
        return f"LoopedNNsight({self.hooked!r})"


def nnsight_model(model: LoopedModel | HookedLooped) -> LoopedNNsight:
    """An nnsight model of ``model`` whose trace reaches every step: ``nm.loop[t].blocks[l].attn.hook_pattern``."""
    return LoopedNNsight(model)


__all__ = ["LoopedNNsight", "LoopView", "BatchedNNsight", "LoopTracer", "nnsight_model"]

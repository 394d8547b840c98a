"""``HookedLooped``: a TransformerLens ``HookedRootModule`` whose hook points are addressable per loop step.

A HookPoint inside the shared blocks would fire once per step, and ``run_with_cache`` would keep only
its last call. Instead the wrapper owns a ``loop`` ModuleList of parameter-free per-step containers
(``loop.3.blocks.1.attn.hook_pattern``, names in ``workbench.hooks.names``), and the model's ``tap``
of step t routes every site to ``loop[t]``. A site with no hook is skipped entirely, and attention
keeps its fused kernel unless one of its own sites is hooked, so a run without hooks costs what the
plain model costs.

The loop is ``LoopedModel.iterate``; unlike ``LoopedModel.run`` (which drops finished graphs from the batch), the wrapper runs every
graph for the same steps, so each cached activation has the full batch axis: until no graph changes
any more (a graph at its fixed point stays there), or exactly ``n_steps``.

The wrapper's train/eval mode is the wrapped model's (``hm.training`` reads it, ``hm.eval()`` sets
it); its hook containers compute nothing and stay in eval mode, so TransformerLens's tools that
refuse a model in training mode see exactly the model's own mode. ``hm.at_step(t)`` is one step as a
``HookedTransformer``-style model (``workbench.hooks.step_view``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from workbench.errors import WorkbenchError
from workbench.hooks.cache import LoopCache
from workbench.hooks.caching import cache_run
from workbench.hooks.guard import MODEL_LOCK
from workbench.hooks.inputs import Problems, as_tensor_input
from workbench.hooks.names import parse_hook_name, step_of
from workbench.hooks.packed import NameMemo
from workbench.hooks.points import BorrowedMode, StepHooks, StepTap, listened
from workbench.model.looped import LoopedModel, Schedule, default_step_cap
from workbench.task.encoding import encode
from workbench.task.tokens import TokenBatch

RETURN_TYPES = ("logits", "state", "output")
#: steps that get a hooks context's hooks when it opens; a run that goes further hooks the next ones as it
#: reaches them (doubling). A run of N = 128 graphs may take up to 256 steps and takes ~17: registering every
#: cached site on all 256 steps' hook points, and removing them again, cost ~0.4 s of a ~4 s run_with_cache.
HOOK_WINDOW = 32


@dataclass
class PendingHooks:
    """A hooks context's hooks not yet on the hook points of steps >= ``upto`` (``HookedLooped.hooks``)."""

    level: int  # the context's level: TransformerLens removes its hooks by it when the context closes
    upto: int
    named: dict[int, list[tuple[str, Any, str]]]  # step -> (name, hook, direction) of hooks named at that step
    filters: list[tuple[Any, Any, str]]  # (names filter, hook, direction)
#: HookedTransformer's weight attributes, stacked [layer, head, ...] as TransformerLens stacks them (``StepView``)
SHARED_WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_in", "b_in", "W_out", "b_out",
                  "W_E", "W_U", "b_U", "QK", "OV")


@dataclass
class HookedOutput:
    """What ``HookedLooped.forward(..., return_type="output")`` returns (tensors on the model's device).

    states[t] is the state step t read (after any hook on ``loop.{t}.hook_state``), states[-1] the last
    output; so states[t + 1] is step t's output unless a hook changed it on the way in.
    iterations[b]: 1 + the last step that changed graph b's state (the steps it needed).
    converged[b]: the last step left graph b unchanged (a fixed point).
    With a continuous latent a graph is frozen once its decoded state repeats (its hidden state would
    drift on), as ``LoopedModel.run`` drops it; a discrete state at a fixed point stays there anyway,
    so discrete graphs are never frozen and an edit after convergence still takes effect.
    """

    logits: list[Tensor]  # factor x [batch, pos, vocab_f] of the last step
    states: Tensor  # [step + 1, batch, pos, factor]
    iterations: Tensor  # [batch]
    converged: Tensor  # [batch] bool
    lengths: Tensor  # [batch]

    @property
    def n_steps(self) -> int:
        return self.states.shape[0] - 1

    @property
    def final(self) -> Int[Tensor, "batch pos factor"]:
        return self.states[-1]


class HookedLooped(BorrowedMode, HookedRootModule):
    """A ``LoopedModel`` with TransformerLens hook points per loop step; the weights stay the model's.

    >>> from workbench.model.config import ModelConfig
    >>> from workbench.task.config import TaskConfig
    >>> torch.manual_seed(0) and None
    >>> model = HookedLooped(LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig(n_names=8)))
    >>> logits, cache = model.run_with_cache(model.to_tokens("a = 3\\nb = a + a"), n_steps=2)
    >>> cache.n_steps, tuple(cache["loop.1.blocks.0.attn.hook_pattern"].shape)
    (2, (1, 2, 9, 9))
    """

    def __init__(self, model: LoopedModel, n_steps: int = 16) -> None:
        super().__init__()
        self.model = model
        self.cfg, self.task, self.vocab = model.cfg, model.task, model.vocab
        self.n_factors = len(model.vocab.sizes)
        self.loop = nn.ModuleList()
        self._points: list[dict[str, nn.Module]] = []  # step t's hook points by site name
        self._views: dict[tuple[int, int | str, bool], Any] = {}
        self.names = NameMemo()  # user names of the rows to_tokens made, for to_str_tokens
        self._pending: list[PendingHooks] = []  # open hooks contexts' hooks of steps not hooked yet
        self.ensure_steps(n_steps)

    # ------------------------------------------------------------------- mode
    def wrapped_model(self) -> LoopedModel | None:
        """Whose train/eval mode this wrapper has (``BorrowedMode``): the wrapped model's."""
        return self.__dict__.get("_modules", {}).get("model")

    # ----------------------------------------------------------------- hook points
    @property
    def n_step_hooks(self) -> int:
        """How many steps have hook points now (``ensure_steps`` adds more)."""
        return len(self.loop)

    def ensure_steps(self, n_steps: int) -> None:
        """Give steps ``0..n_steps-1`` hook points (adding parameter-free containers as needed)."""
        if n_steps <= len(self.loop):
            return
        while len(self.loop) < n_steps:
            container = StepHooks(self.cfg.n_layers, self.n_factors).eval()
            self.loop.append(container)
            self._points.append({name: m for name, m in container.named_modules() if isinstance(m, HookPoint)})
        self.loop.eval()
        self.setup()

    def has_hooks(self) -> bool:
        """Whether any hook point has a hook now."""
        return any(listened(hp) for hp in self.hook_dict.values())

    # ------------------------------------------------------------------ weights
    def state_dict(self, *args, **kwargs):
        """The wrapped model's state dict, keys unchanged (the hook containers hold nothing)."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------- inputs
    def to_token_batch(self, problems: Problems, *, pad_to: int | None = None, seed: int = 0) -> TokenBatch:
        """A ``TokenBatch`` (tokens plus truth, node positions, depths) of one problem or a list of them."""
        return encode(problems, self.task, seed=seed, pad_to=pad_to)[0]

    def to_tokens(self, problems: Problems, *, pad_to: int | None = None, seed: int = 0) -> Int[Tensor, "batch pos factor"]:
        """Input tokens [batch, pos, factor] of one problem (text or parsed) or a list of them, padded.

        The user's variable names of each row are remembered, so ``to_str_tokens`` can show them.
        """
        tb, maps = encode(problems, self.task, seed=seed, pad_to=pad_to)
        tokens = torch.from_numpy(tb.tokens).long()
        self.names.remember(tokens, maps, self.model.vocab.sizes)  # user names (none for graphs or token batches)
        return tokens.to(self.device)

    def to_str_tokens(self, tokens) -> list[str] | list[list[str]]:
        """A label per position (``a=?``, ``+``, ``=``, ``SEP``) of text or tokens, with the user's names where known."""
        return self.at_step(0).to_str_tokens(tokens)

    def to_string(self, tokens) -> str | list[str]:
        """The problem text of tokens [batch, pos, factor] (one ``name = expression`` line per equation)."""
        return self.at_step(0).to_string(tokens)

    def step_range(self, tokens: Int[Tensor, "batch pos factor"], n_steps: int | None = None, max_steps: int | None = None,
                   min_steps: int = 0) -> tuple[int, int]:
        """``(most, least)`` steps a run of ``tokens`` takes: ``n_steps`` fixes both; by default the cap of
        ``LoopedModel.run`` (2 x the equations of the largest graph, >= 2)."""
        if not self.cfg.looped:
            return 1, 1
        if n_steps is not None:
            if n_steps < 1:
                raise WorkbenchError(f"n_steps must be at least 1, got {n_steps}")
            return n_steps, n_steps
        if max_steps is None:
            max_steps = default_step_cap(tokens)
        if max(max_steps, min_steps) < 1:
            raise WorkbenchError(f"max_steps must be at least 1, got {max_steps}")
        return max(max_steps, min_steps), min_steps

    # ------------------------------------------------------------------ forward
    def forward(self, tokens: Tensor | Problems, *, lengths: Tensor | None = None, n_steps: int | None = None,
                max_steps: int | None = None, min_steps: int = 0, return_type: str = "logits",
                grad: bool = False) -> Any:
        """Loop the model over ``tokens``; every site of step t passes ``loop.{t}.…``'s hook point.

        tokens: [batch, pos, factor] (right-padded) or problems (see ``to_tokens``).
        n_steps: run exactly this many steps; else until no graph changes (at least ``min_steps``,
            at most ``max_steps``, default as ``LoopedModel.run``).
        return_type: ``logits`` (the last step's, one tensor per factor), ``state`` (the final state)
            or ``output`` (a ``HookedOutput`` with every step's state).
        grad: keep autograd (within a step: argmax cuts the graph between steps); off by default.
        """
        with MODEL_LOCK, torch.set_grad_enabled(grad):  # hooks are global state: never run beside another call
            return self.run_steps(tokens, lengths, n_steps, max_steps, min_steps, return_type, always=False)

    def run_steps(self, tokens, lengths, n_steps, max_steps, min_steps, return_type, always: bool,
             override: dict[int, dict[str, nn.Module]] | None = None, shared: dict[str, nn.Module] | None = None):
        """The wrappers' one driver over ``LoopedModel.iterate`` (full batch every step), without the lock.

        ``forward``, the nnsight wrapper and a ``StepView`` call it: ``always`` calls every hook point
        (nnsight intercepts module calls, so it must see each one); ``override`` routes chosen steps to
        other hook points (a ``StepView``'s); ``shared`` adds hook points called at every step after the
        step's own (nnsight's iteration API). Callers hold ``MODEL_LOCK``.
        """
        if return_type not in RETURN_TYPES:
            raise WorkbenchError(f"return_type must be one of {list(RETURN_TYPES)}, got {return_type!r}")
        tokens, lengths = as_tensor_input(tokens, self.task, lengths)
        tokens, lengths = tokens.to(self.device), lengths.to(self.device)
        most, least = self.step_range(tokens, n_steps, max_steps, min_steps)
        if most > len(self.loop):
            if self.has_hooks():
                raise WorkbenchError(f"this run may take {most} steps but only steps 0..{len(self.loop) - 1} have "
                                     f"hook points; call ensure_steps({most}) before adding hooks")
            self.ensure_steps(most)

        def taps(t: int) -> StepTap:
            self.hook_through(t)
            return StepTap(override[t] if override and t in override else self._points[t], always, shared)

        states, last = [], None
        for last in self.model.iterate(tokens, lengths, schedule=Schedule(most, least), taps=taps):
            if return_type == "output":
                states.append(last.state_in)
        if return_type == "logits":
            return last.logits
        if return_type == "state":
            return last.state
        states.append(last.state)
        return HookedOutput(last.logits, torch.stack(states), last.iterations.clone(), last.converged.clone(), lengths)

    # ------------------------------------------------- hooks: sized, guarded, per step
    def _size_for(self, args: Sequence[Any], kwargs: dict, names: Sequence[Any]) -> dict:
        """Give every step the run may take hook points; returns kwargs with ``min_steps`` raised so that
        the run reaches the latest step a hook names. A name past a fixed run's last step is an error:
        its hook would never be called."""
        named = [n for n in names if isinstance(n, str)]
        latest = max((step_of(n) for n in named), default=-1)
        last = kwargs.get("n_steps") if self.cfg.looped else 1
        if latest >= 0 and last is not None and latest >= last:
            name = max(named, key=step_of)
            raise WorkbenchError(f"'{name}' is never reached: this run takes steps 0..{last - 1} "
                                 + ("(a feedforward model runs one step)" if not self.cfg.looped
                                    else f"(n_steps={last}); raise n_steps or name an earlier step"))
        if latest >= 0 and kwargs.get("n_steps") is None and self.cfg.looped:
            kwargs = {**kwargs, "min_steps": max(kwargs.get("min_steps", 0), latest + 1)}
        if args:
            tokens, _ = as_tensor_input(args[0], self.task, kwargs.get("lengths"))
            most, _ = self.step_range(tokens, kwargs.get("n_steps"), kwargs.get("max_steps"), kwargs.get("min_steps", 0))
            self.ensure_steps(max(most, latest + 1))
        else:
            self.ensure_steps(latest + 1)
        return kwargs

    def _within(self, names_filter, n_steps: int):
        """``names_filter`` (TransformerLens forms) restricted to steps < ``n_steps`` hook points."""
        if names_filter is None:
            base = lambda name: True  # noqa: E731
        elif isinstance(names_filter, str):
            base = lambda name: name == names_filter  # noqa: E731
        elif isinstance(names_filter, (list, tuple, set)):
            wanted = set(names_filter)
            for name in wanted:
                parse_hook_name(name)
            base = wanted.__contains__
        else:
            base = names_filter
        return lambda name: step_of(name) < n_steps and base(name)

    @contextmanager
    def hooks(self, fwd_hooks=(), bwd_hooks=(), reset_hooks_end: bool = True, clear_contexts: bool = False) -> Iterator["HookedLooped"]:
        """TransformerLens's ``hooks`` context, holding the model lock; names must exist (``ensure_steps``).

        Hooks land on the first ``HOOK_WINDOW`` steps' hook points at once and on later steps' as a run
        reaches them (``hook_through``): what a hook sees is the same, but a run that stops long before its
        step cap does not pay for registering (and removing) hooks on steps it never takes.
        """
        with MODEL_LOCK:
            for name, _ in list(fwd_hooks) + list(bwd_hooks):
                if isinstance(name, str) and name not in self.hook_dict:
                    s = parse_hook_name(name)
                    if s.step >= len(self.loop):
                        raise WorkbenchError(f"'{name}': only steps 0..{len(self.loop) - 1} have hook points; "
                                             f"call ensure_steps({s.step + 1}) first")
                    raise WorkbenchError(f"'{name}' is not a hook point of this model (n_layers={self.cfg.n_layers})")
            window = min(HOOK_WINDOW, len(self.loop))
            pending = PendingHooks(level=0, upto=window, named={}, filters=[])
            now: dict[str, list] = {"fwd": [], "bwd": []}
            for direction, given in (("fwd", fwd_hooks), ("bwd", bwd_hooks)):
                for name, fn in given:
                    if isinstance(name, str):
                        step = step_of(name)
                        if step < window:
                            now[direction].append((name, fn))
                        else:
                            pending.named.setdefault(step, []).append((name, fn, direction))
                    else:
                        now[direction].append((lambda n, keep=name: step_of(n) < window and keep(n), fn))
                        pending.filters.append((name, fn, direction))
            with super().hooks(now["fwd"], now["bwd"], reset_hooks_end, clear_contexts) as model:
                pending.level = self.context_level
                self._pending.append(pending)
                try:
                    yield model
                finally:
                    if not reset_hooks_end:  # the hooks outlive the context: put them on every step now
                        self._hook_pending(pending, len(self.loop))
                    self._pending.remove(pending)

    def hook_through(self, step: int) -> None:
        """Put the open contexts' hooks on the hook points of steps up to ``step`` (a run is about to take it)."""
        for pending in self._pending:
            if pending.upto <= step:
                self._hook_pending(pending, min(len(self.loop), max(2 * pending.upto, step + 1)))

    def _hook_pending(self, pending: PendingHooks, upto: int) -> None:
        """Register ``pending``'s hooks on steps ``pending.upto .. upto - 1``, at its context's level."""
        for step in range(pending.upto, upto):
            for name, fn, direction in pending.named.pop(step, ()):
                self.check_and_add_hook(self.hook_dict[name], name, fn, dir=direction, level=pending.level)
            if pending.filters:
                for site, hp in self._points[step].items():
                    name = f"loop.{step}.{site}"
                    for keep, fn, direction in pending.filters:
                        if keep(name):
                            self.check_and_add_hook(hp, name, fn, dir=direction, level=pending.level)
        pending.upto = max(pending.upto, upto)

    def remove_all_hook_fns(self, direction="both", including_permanent: bool = False, level: int | None = None) -> None:
        """TransformerLens's, visiting only the hook points that hold a hook (a model with hook points for
        hundreds of steps would otherwise walk thousands of empty ones every time a context closes)."""
        for hp in self.hook_points():
            if hp.fwd_hooks or hp.bwd_hooks:
                hp.remove_hooks(direction, including_permanent=including_permanent, level=level)

    def run_with_hooks(self, *model_args: Any, fwd_hooks=(), bwd_hooks=(), reset_hooks_end: bool = True,
                       clear_contexts: bool = False, **model_kwargs: Any):
        """Run with temporary hooks ``[(name or filter, fn)]``; a hook named at step t makes the run reach t.

        ``fn(tensor, *, hook)`` returns None (keep) or a replacement, as in TransformerLens; a filter
        sees the full ``loop.{t}.…`` names (see ``workbench.hooks.names.sites_filter``).
        """
        with MODEL_LOCK:
            names = [n for n, _ in list(fwd_hooks) + list(bwd_hooks)]
            model_kwargs = self._size_for(model_args, model_kwargs, names)
            cap = len(self.loop)
            wrap = lambda hooks: [(n if isinstance(n, str) else self._within(n, cap), fn) for n, fn in hooks]  # noqa: E731
            return super().run_with_hooks(*model_args, fwd_hooks=wrap(fwd_hooks), bwd_hooks=wrap(bwd_hooks),
                                          reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts, **model_kwargs)

    def run_with_cache(self, *model_args: Any, names_filter=None, device=None, remove_batch_dim: bool = False,
                       incl_bwd: bool = False, reset_hooks_end: bool = True, clear_contexts: bool = False,
                       pos_slice=None, fwd_hooks=(), metric=None, **model_kwargs: Any) -> tuple[Any, LoopCache]:
        """Run and cache the activations of every step: ``(output, LoopCache)``.

        ``names_filter`` as in TransformerLens (a name, a list, or a function of the full name);
        ``fwd_hooks`` run before the caching hooks, so the cache shows their edits. ``incl_bwd=True``
        backpropagates ``metric(output)`` (a scalar) and caches ``<name>_grad``: gradients reach the
        last step only, the discrete bottleneck stands between steps.
        """
        with MODEL_LOCK:
            names = [n for n, _ in fwd_hooks]
            if isinstance(names_filter, str):
                names.append(names_filter)
            elif isinstance(names_filter, (list, tuple, set)):
                names += list(names_filter)
            model_kwargs = self._size_for(model_args, model_kwargs, names)
            if incl_bwd:
                model_kwargs["grad"] = True
            keep = self._within(names_filter, len(self.loop))
            hooks = [(n if isinstance(n, str) else self._within(n, len(self.loop)), fn) for n, fn in fwd_hooks]
            out, cache = cache_run(self, model_args, model_kwargs, names_filter=keep, device=device,
                                   remove_batch_dim=remove_batch_dim, incl_bwd=incl_bwd, metric=metric,
                                   pos_slice=pos_slice, reset_hooks_end=reset_hooks_end,
                                   clear_contexts=clear_contexts, fwd_hooks=hooks)
            return out, LoopCache(cache, n_layers=self.cfg.n_layers, model=self, has_batch_dim=not remove_batch_dim)

    def at_step(self, step: int, factor: int | str = "value", *, fold_ln: bool = True):
        """Loop step ``step`` as a TransformerLens ``HookedTransformer``-style model (a ``StepView``).

        ``factor`` picks the unembedding head behind ``W_U``/``b_U`` and the logits (``"value"`` by
        default); ``fold_ln`` folds the LayerNorms into the weights, as TransformerLens's
        ``from_pretrained`` does. Views are kept, one per (step, factor, fold_ln). The weights are the
        same at every step, so ``hm.W_Q`` (and the other ``HookedTransformer`` weight names) are there too.

        >>> from workbench.model.config import ModelConfig
        >>> from workbench.task.config import TaskConfig
        >>> hm = HookedLooped(LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig(n_names=8)))
        >>> hm.at_step(3).cfg.n_layers, hm.at_step(3) is hm.at_step(3), torch.equal(hm.W_Q, hm.at_step(3).W_Q)
        (1, True, True)
        """
        from workbench.hooks.step_view import StepView, factor_index

        key = (step, factor_index(factor), fold_ln)
        if key not in self._views:
            self._views[key] = StepView(self, step, factor, fold_ln)
        return self._views[key]

    def __getattr__(self, name: str) -> Any:
        if name in SHARED_WEIGHTS:  # one block stack serves every step: any step's view has the same weights
            return getattr(self.at_step(0), name)
        return super().__getattr__(name)

    def __repr__(self) -> str:
        return f"HookedLooped({self.cfg.n_layers} layers, hook points for {len(self.loop)} steps)"


def hooked(model: LoopedModel | HookedLooped, n_steps: int = 16) -> HookedLooped:
    """The hookable wrapper of ``model`` (a ``LoopedModel``; a ``HookedLooped`` is returned as is)."""
    if isinstance(model, HookedLooped):
        return model
    if not isinstance(model, LoopedModel):
        raise WorkbenchError(f"hooked() takes a LoopedModel, got {type(model).__name__}")
    return HookedLooped(model, n_steps=n_steps)


def load_hooked(name_or_path: str = "default", *, device: str | torch.device | None = None) -> HookedLooped:
    """Load a model folder (``default``, a name or a path) and wrap it with per-step hook points."""
    from workbench.model.checkpoint import load_model

    return hooked(load_model(name_or_path, device=device))


__all__ = ["HookedLooped", "HookedOutput", "StepHooks", "StepTap", "hooked", "load_hooked"]

r"""One-call interventions on the loop, batched: trajectories, corruption, patching, head ablation.

Every function takes a model (``LoopedModel`` or ``HookedLooped``) and problems (text, parsed
problems, a list of them, ``Graphs`` or a ``TokenBatch``), holds the model lock, and returns a
dataclass of plain CPU tensors. A node's value is read at its defining position (``rhs_pos``) in
the VALUE factor; ``EMPTY`` (``model.vocab.empty``) means not written yet; padded nodes read -1.

Steps are 0-based: step 0 reads the input and writes the leaves. ``values[0]`` is the input,
``values[t + 1]`` the state after step t (as ``LoopOutput.states``).

>>> from workbench.model.config import ModelConfig
>>> from workbench.task.config import TaskConfig
>>> model = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig(n_names=8))
>>> problems = ["a = 3\nb = a + a", "x = 1\ny = x\nz = y + x"]
>>> traj = trajectory(model, problems, n_steps=4)
>>> tuple(traj.values.shape), tuple(traj.first_correct.shape)  # [step + 1, batch, node], [batch, node]
((5, 2, 3), (2, 3))
>>> inj = inject_corruption(model, problems, 2, nodes=[["a"], ["y"]], values=5)
>>> inj.corrupted.values[2, 0, 0].item(), inj.corrupted.values[2, 1, 1].item()
(5, 5)
>>> patched = patch(model, ["a = 4\nb = a + a", "x = 2\ny = x\nz = y + x"], problems, step=1)
>>> bool((patched.patched.states[1] == patched.source.states[1]).all())
True
>>> ablate_heads(model, problems, [(0, 1)], steps=[0], mode="mean").heads
[(0, 1)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from workbench.errors import WorkbenchError
from workbench.hooks.guard import guarded
from workbench.hooks.names import hook_name, parse_hook_name, sites_filter
from workbench.hooks.tl_wrapper import HookedLooped, hooked
from workbench.hooks.decoded import Trajectory, decode_run, node_truth, node_values
from workbench.model.looped import LoopedModel, default_step_cap
from workbench.task.encoding import Problems, encode, pad_token_batch
from workbench.task.text import Problem, parse_problem
from workbench.task.tokens import TokenBatch
from workbench.task.vocab import F_VALUE

Model = LoopedModel | HookedLooped


def _prepare(model: Model, problems: Problems, seed: int = 0, pad_to: int | None = None) -> tuple[HookedLooped, TokenBatch]:
    hm = hooked(model)
    return hm, encode(problems, hm.task, seed=seed, pad_to=pad_to)[0]


def _run(hm: HookedLooped, tb: TokenBatch, fwd_hooks=(), **run) -> Trajectory:
    tokens = torch.from_numpy(tb.tokens).long().to(hm.device)
    lengths = torch.from_numpy(tb.length).long()
    out = hm.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks), lengths=lengths, return_type="output", **run)
    return decode_run(out, tb)


def _default_cap(tb: TokenBatch) -> int:
    """The loop's own default cap (``default_step_cap``) for these graphs."""
    return default_step_cap(torch.from_numpy(tb.tokens))


@guarded
def trajectory(model: Model, problems: Problems, *, n_steps: int | None = None, max_steps: int | None = None,
               fwd_hooks: Sequence = (), seed: int = 0) -> Trajectory:
    """Run ``problems`` until no graph changes (or ``n_steps``) and decode every step per node.

    ``fwd_hooks`` are TransformerLens hooks ``[(name or filter, fn)]`` active during the run.
    """
    hm, tb = _prepare(model, problems, seed)
    return _run(hm, tb, fwd_hooks, n_steps=n_steps, max_steps=max_steps)


# ---------------------------------------------------------------------------------------- corruption
@dataclass
class Injection:
    """A clean run and the same run with node values overwritten in the state step ``step`` reads.

    Repair is claimed only where there was a value to corrupt (the app's report of one injection uses
    the same rule): an overwritten node is *repaired* when the clean run had written it (any value, right
    or wrong) in the state ``step`` reads, the value now there is wrong, and the node holds its true value
    at the end. A node not written yet (``empty`` in that state) is written by the model when its turn
    comes, which is computing, not repairing: it is never counted as repaired, whatever it ends at (nor is
    a node overwritten with its true value). Such nodes stay in ``mask``, so a rate over ``mask`` counts
    them as not repaired; a rate over ``was_error`` leaves them out.
    """

    step: int
    mask: Tensor  # [batch, node] the overwritten nodes
    injected: Tensor  # [batch, node] the values written (-1 elsewhere)
    clean: Trajectory
    corrupted: Trajectory
    empty: int  # the VALUE code of a node not written yet (``vocab.empty``)

    @property
    def recovered(self) -> Bool[Tensor, "batch"]:
        """[batch]: at the end every node of the graph holds its true value again."""
        return self.corrupted.solved

    @property
    def was_written(self) -> Bool[Tensor, "batch node"]:
        """[batch, node]: an overwritten node the clean run had written by the state ``step`` reads."""
        return self.mask & (self.clean.values[self.step] != self.empty)

    @property
    def was_error(self) -> Bool[Tensor, "batch node"]:
        """[batch, node]: an overwritten node whose written value the injection replaced with a wrong one."""
        return self.was_written & ~self.corrupted.correct[self.step]

    @property
    def repaired(self) -> Bool[Tensor, "batch node"]:
        """[batch, node]: ``was_error`` and the node holds its true value at the end; False for every other
        node (a node not written yet in the overwritten state, one overwritten with its true value, one not
        overwritten)."""
        return self.was_error & self.corrupted.correct[-1]

    @property
    def repair_step(self) -> Int[Tensor, "batch node"]:
        """[batch, node]: for a ``repaired`` node, the step from which it holds its true value for good
        (``step`` itself: repaired by the step that read the error); -1 for every other node."""
        return torch.where(self.repaired, self.corrupted.settled, -1)

    @property
    def delay(self) -> Int[Tensor, "batch"]:
        """[batch]: extra steps the corrupted run took to reach its fixed point (vs. the clean run)."""
        return self.corrupted.iterations - self.clean.iterations

    @property
    def same_as_clean(self) -> Bool[Tensor, "batch"]:
        """[batch]: the corrupted run ended in the clean run's final state."""
        return (self.corrupted.states[-1] == self.clean.states[-1]).flatten(1).all(1)


def _check_clean(clean: Trajectory, tb: TokenBatch, step: int) -> None:
    """Refuse a given clean run that cannot stand for a fresh one: other problems, too short, or cut off
    by a step cap (a fresh run with the injection's larger cap might go on)."""
    truth = node_truth(tb)
    if clean.truth.shape != truth.shape or not np.array_equal(clean.truth.numpy(), truth):
        raise WorkbenchError("the clean run given is of other problems than the injection's")
    if clean.n_steps <= step:  # a fresh clean run reads the overwritten state (``min_steps=step``)
        raise WorkbenchError(f"the clean run given ran steps 0..{clean.n_steps - 1}; the injection overwrites state "
                             f"{step}, which a clean run must read too")
    if not clean.converged.all():
        raise WorkbenchError("the clean run given stopped at a step cap, not a fixed point; leave it out to rerun it")


def _node_mask(spec, tb: TokenBatch, problems: Problems, task) -> Tensor:
    """A [batch, node] bool mask from a mask, per-graph node indices, or per-graph variable names."""
    B, N = tb.rhs_pos.shape
    if isinstance(spec, (Tensor, np.ndarray)) and np.asarray(spec).dtype == bool:
        mask = torch.as_tensor(np.asarray(spec))
        if mask.shape != (B, N):
            raise WorkbenchError(f"a node mask must be [batch, node] = {(B, N)}, got {tuple(mask.shape)}")
        return mask & torch.from_numpy(tb.graphs.valid)
    rows = list(spec)
    if len(rows) != B:
        raise WorkbenchError(f"give one list of nodes per graph ({B} graphs), got {len(rows)}")
    names = _problem_names(problems, task)
    mask = torch.zeros(B, N, dtype=torch.bool)
    for b, row in enumerate(rows):
        for node in ([row] if isinstance(row, (int, str)) else row):
            if isinstance(node, str):
                if names is None or node not in names[b]:
                    raise WorkbenchError(f"graph {b} has no variable '{node}'")
                node = names[b].index(node)
            if not 0 <= int(node) < int(tb.graphs.n_nodes[b]):
                raise WorkbenchError(f"graph {b} has nodes 0..{int(tb.graphs.n_nodes[b]) - 1}, not {node}")
            mask[b, int(node)] = True
    return mask


def _problem_names(problems: Problems, task) -> list[list[str]] | None:
    if isinstance(problems, (str, Problem)):
        problems = [problems]
    if isinstance(problems, Sequence) and all(isinstance(p, (str, Problem)) for p in problems):
        return [(parse_problem(p, task) if isinstance(p, str) else p).names for p in problems]
    return None


@guarded
def inject_corruption(model: Model, problems: Problems, step: int, *, nodes=None, values=None, count: int = 1,
                      seed: int = 0, max_steps: int | None = None, clean: Trajectory | None = None) -> Injection:
    """Overwrite node values in the state step ``step`` reads, continue until no graph changes, report recovery.

    nodes: a [batch, node] bool mask, or per graph a list of node indices (model order) or variable
        names; default: ``count`` random nodes per graph among those the clean run had already solved
        by then (any node if none).
    values: the values to write, an int or a [batch, node] array; default: a random wrong value.
    clean: the clean run of these problems when the caller already has it (the app caches every run), run
        until no graph changes (as ``trajectory(model, problems)``) and with a step that read state ``step``;
        only the corrupted run is computed then, and the result equals the one with a fresh clean run.
    The corrupted run may take up to ``step`` + the usual cap of steps (``max_steps`` overrides).
    """
    hm, tb = _prepare(model, problems)
    if step < 0:
        raise WorkbenchError(f"step must be >= 0, got {step}")
    cap = max_steps if max_steps is not None else step + 1 + _default_cap(tb)
    if clean is None:
        clean = _run(hm, tb, min_steps=step, max_steps=cap)
    else:
        _check_clean(clean, tb, step)
    rng = np.random.default_rng(seed)
    valid = clean.node_mask
    if nodes is None:
        pool = clean.correct[min(step, clean.n_steps)] & valid
        pool = torch.where(pool.any(-1, keepdim=True), pool, valid)
        keys = torch.from_numpy(rng.random(pool.shape)).masked_fill(~pool, 2.0)
        ranks = keys.argsort(-1).argsort(-1)
        mask = (ranks < count) & pool
    else:
        mask = _node_mask(nodes, tb, problems, hm.task)
    p = hm.task.modulus
    if values is None:
        shift = torch.from_numpy(rng.integers(1, p, size=mask.shape))
        injected = (clean.truth.clamp(min=0) + shift) % p  # uniform over the wrong values
    else:
        injected = torch.as_tensor(np.broadcast_to(np.asarray(values), mask.shape).copy()).long()
        if ((injected < 0) | (injected >= hm.vocab.n_values + 2))[mask].any():
            raise WorkbenchError(f"injected values must be codes 0..{hm.vocab.n_values + 1}")
    injected = torch.where(mask, injected, -1)
    b_idx, n_idx = mask.nonzero(as_tuple=True)
    pos = torch.from_numpy(tb.rhs_pos).long()[b_idx, n_idx]

    def overwrite(state: Tensor, hook) -> Tensor:
        state = state.clone()
        state[b_idx, pos, F_VALUE] = injected[b_idx, n_idx].to(state.device)
        return state

    corrupted = _run(hm, tb, [(hook_name(step, "hook_state"), overwrite)], max_steps=cap)
    return Injection(step, mask, injected, clean, corrupted, hm.vocab.empty)


# ------------------------------------------------------------------------------------------ patching
@dataclass
class Patched:
    """A target run and the same run with one activation replaced by another run's (or step's)."""

    name: str  # the patched hook point of the target run
    source_name: str  # where the patch came from in the source run
    clean: Trajectory  # the target, unpatched
    source: Trajectory
    patched: Trajectory

    @property
    def changed(self) -> Tensor:
        """[batch]: the patch changed the target's final state."""
        return (self.patched.states[-1] != self.clean.states[-1]).flatten(1).any(1)

    @property
    def matches_source(self) -> Tensor:
        """[batch]: the patched run ended in the source run's final state."""
        return (self.patched.states[-1] == self.source.states[-1]).flatten(1).all(1)


_QUERY_AXIS = {"attn.hook_attn_scores": 2, "attn.hook_pattern": 2}


@guarded
def patch(model: Model, target: Problems, source: Problems | None = None, *, step: int, site: str = "hook_state",
          layer: int | None = None, factor: int | None = None, source_step: int | None = None,
          positions: Iterable[int] | None = None, max_steps: int | None = None) -> Patched:
    """Run ``target`` with activation ``site`` (layer, factor) of ``step`` taken from ``source`` at ``source_step``.

    source: other problems (batch 1 or the target's size; padded to a common length), or None for the
        target itself (patching across steps). source_step defaults to ``step``.
    positions: patch only these positions (the query axis for scores and patterns); default all.
    Patching the whole ``hook_state`` of step t from a clean run restores the clean run from t on.
    """
    hm = hooked(model)
    tb_t, _ = encode(target, hm.task)
    tb_s = tb_t if source is None else encode(source, hm.task)[0]
    width = max(tb_t.max_len, tb_s.max_len)
    tb_t, tb_s = pad_token_batch(tb_t, width), pad_token_batch(tb_s, width)
    if tb_s.batch not in (1, tb_t.batch):
        raise WorkbenchError(f"the source has {tb_s.batch} graphs; give 1 or as many as the target ({tb_t.batch})")
    source_step = step if source_step is None else source_step
    name = hook_name(step, site, layer, factor=factor)
    source_name = hook_name(source_step, site, layer, factor=factor)
    cap = max_steps if max_steps is not None else max(step, source_step) + 1 + _default_cap(tb_t)
    src_tokens = torch.from_numpy(tb_s.tokens).long().to(hm.device)
    out, cache = hm.run_with_cache(src_tokens, names_filter=[source_name], lengths=torch.from_numpy(tb_s.length),
                                   return_type="output", max_steps=cap)
    source_traj = decode_run(out, tb_s)
    donor = cache[source_name]
    axis = _QUERY_AXIS.get(parse_hook_name(name).site, 1)
    pos = None if positions is None else torch.as_tensor(list(positions), dtype=torch.long)

    def replace(act: Tensor, hook) -> Tensor:
        new = donor.expand_as(act).to(act.device, act.dtype)
        if pos is None:
            return new.clone()
        act = act.clone()
        index = [slice(None)] * act.ndim
        index[axis] = pos
        act[tuple(index)] = new[tuple(index)]
        return act

    clean = _run(hm, tb_t, min_steps=step, max_steps=cap)
    patched = _run(hm, tb_t, [(name, replace)], max_steps=cap)
    return Patched(name, source_name, clean, source_traj, patched)


# ------------------------------------------------------------------------------------------- ablation
@dataclass
class Ablation:
    """A clean run and the same run with chosen attention heads ablated at chosen steps."""

    heads: list[tuple[int, int]]  # (layer, head)
    steps: list[int] | None  # None: every step
    mode: str
    clean: Trajectory
    ablated: Trajectory

    @property
    def accuracy_drop(self) -> float:
        """Final node accuracy of the clean run minus the ablated run's."""
        return float(self.clean.node_accuracy()[-1] - self.ablated.node_accuracy()[-1])

    @property
    def changed(self) -> Tensor:
        """[batch]: the ablation changed the graph's final state."""
        return (self.ablated.states[-1] != self.clean.states[-1]).flatten(1).any(1)


def _heads(heads, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
    pairs = [(l, h) for l, hs in heads.items() for h in hs] if isinstance(heads, Mapping) else [tuple(x) for x in heads]
    for l, h in pairs:
        if not (0 <= l < n_layers and 0 <= h < n_heads):
            raise WorkbenchError(f"head ({l}, {h}) does not exist: layers 0..{n_layers - 1}, heads 0..{n_heads - 1}")
    return sorted(set(pairs))


@guarded
def ablate_heads(model: Model, problems: Problems, heads, *, steps: Iterable[int] | None = None, mode: str = "zero",
                 max_steps: int | None = None) -> Ablation:
    """Ablate attention heads (their ``hook_z`` output) at ``steps`` (default all) and rerun.

    heads: ``[(layer, head), ...]`` or ``{layer: [head, ...]}``.
    mode: ``zero``, or ``mean`` (the head's mean output over the batch's real positions at the same
        step of the clean run; after the clean run's last step, its last, which is a fixed point).
    """
    if mode not in ("zero", "mean"):
        raise WorkbenchError(f"mode must be 'zero' or 'mean', got {mode!r}")
    hm, tb = _prepare(model, problems)
    pairs = _heads(heads, hm.cfg.n_layers, hm.cfg.n_heads)
    step_list = None if steps is None else sorted(set(int(t) for t in steps))
    cap = max_steps if max_steps is not None else _default_cap(tb) + (max(step_list) + 1 if step_list else 0)
    tokens = torch.from_numpy(tb.tokens).long().to(hm.device)
    lengths = torch.from_numpy(tb.length).long()
    layers = sorted({l for l, _ in pairs})
    min_steps = max(step_list) + 1 if step_list else 0
    means, last = {}, 0
    if mode == "mean":
        out, cache = hm.run_with_cache(tokens, names_filter=sites_filter("attn.hook_z", layers=layers), lengths=lengths,
                                       return_type="output", min_steps=min_steps, max_steps=cap)
        clean = decode_run(out, tb)
        real = (torch.arange(tb.max_len)[None, :] < lengths[:, None]).to(hm.device)  # [batch, pos]
        for name, z in cache.items():  # z [batch, pos, head, d_head]
            s = parse_hook_name(name)
            means[(s.step, s.layer)] = z[real].mean(0)  # [head, d_head]
        last = cache.n_steps - 1
    else:
        clean = _run(hm, tb, min_steps=min_steps, max_steps=cap)
    by_layer = {l: [h for ll, h in pairs if ll == l] for l in layers}

    def ablate(z: Tensor, hook) -> Tensor:
        s = parse_hook_name(hook.name)
        z = z.clone()
        hs = by_layer[s.layer]
        z[:, :, hs] = 0.0 if mode == "zero" else means[(min(s.step, last), s.layer)][hs].to(z.dtype)
        return z

    keep = sites_filter("attn.hook_z", layers=layers, steps=step_list)
    ablated = _run(hm, tb, [(keep, ablate)], min_steps=min_steps, max_steps=cap)
    return Ablation(pairs, step_list, mode, clean, ablated)


__all__ = ["Trajectory", "trajectory", "node_values", "Injection", "inject_corruption", "Patched", "patch",
           "Ablation", "ablate_heads"]

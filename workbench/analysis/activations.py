"""Activations of looped runs: sampled batches, chunked cached runs, residuals gathered at node positions.

Every analysis starts here. ``sample_batch`` draws graphs for a model's task; ``cached_runs`` runs them
in chunks through the hookable wrapper (free-running, or ``teacher``: step t reads the teacher state
after step t-1, so every step sees an in-distribution input), yielding each chunk's output and cache;
``gather`` collects the residual stream at every (step, residual point) at the nodes' defining
positions (``rhs``) and at their operand occurrences (``operand``), with labels and the graph of every
sample, so that probes can split by graph.

Residual points of an L-layer model, in forward order: ``L0.pre`` (the embedded state), then
``Ll.mid`` (after attention) and ``Ll.post`` (after the MLP) of every layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from workbench.errors import WorkbenchError
from workbench.hooks.names import hook_name, sites_filter, step_of
from workbench.hooks.tl_wrapper import HookedLooped, HookedOutput, hooked
from workbench.model.looped import LoopedModel
from workbench.task.graphs import sample_graphs
from workbench.task.tokens import TokenBatch, tokenize
from workbench.task.vocab import F_VALUE

MODES = ("free", "teacher")
Model = LoopedModel | HookedLooped


def residual_points(n_layers: int) -> list[tuple[str, int]]:
    """The residual stream's points as ``(site, layer)``, in forward order.

    >>> residual_points(2)
    [('hook_resid_pre', 0), ('hook_resid_mid', 0), ('hook_resid_post', 0), ('hook_resid_mid', 1), ('hook_resid_post', 1)]
    """
    points = [("hook_resid_pre", 0)]
    for layer in range(n_layers):
        points += [("hook_resid_mid", layer), ("hook_resid_post", layer)]
    return points


def point_label(site: str, layer: int) -> str:
    """A short label of a residual point: ``('hook_resid_mid', 1)`` -> ``'L1.mid'``.

    >>> point_label("hook_resid_pre", 0), point_label("hook_resid_post", 1)
    ('L0.pre', 'L1.post')
    """
    return f"L{layer}.{site.removeprefix('hook_resid_')}"


def sample_batch(model: Model, n_nodes: int, count: int, *, seed: int = 0, depth_cap: int | None = None,
                 fan_in: tuple[int, ...] = (1, 2, 3)) -> TokenBatch:
    """``count`` fresh graphs of ``n_nodes`` nodes for the model's task, tokenized (seeded by ``(seed, n_nodes)``)."""
    task = model.task
    if n_nodes > task.n_names:
        raise WorkbenchError(f"graphs of {n_nodes} nodes need more names than this model's pool of {task.n_names}")
    if n_nodes < 7:
        raise WorkbenchError(f"graphs need at least 7 nodes (6 leaves plus one), got {n_nodes}")
    if count < 1:
        raise WorkbenchError(f"count must be positive, got {count}")
    fan_in = tuple(k for k in fan_in if k <= task.max_fan_in) or (1,)
    graphs = sample_graphs(n_nodes, count, rng=np.random.default_rng([seed, n_nodes]), task=task,
                           depth_cap=depth_cap, fan_in=fan_in)
    return tokenize(graphs, model.vocab)


def default_steps(tb: TokenBatch, extra: int = 2, cap: int | None = None) -> int:
    """Steps that let a perfect model finish every graph and show it standing still: max depth + 1 + ``extra``."""
    n = int(tb.max_depth.max()) + 1 + extra
    return n if cap is None else min(n, cap)


def teacher_hooks(tb: TokenBatch, n_steps: int, device: torch.device | str = "cpu") -> list:
    """Hooks making step t read the teacher state after step t-1 (step 0 reads the input)."""
    states = [torch.from_numpy(tb.state(t - 1)).long().to(device) for t in range(n_steps)]

    def teach(state, hook):
        return states[step_of(hook.name)]

    return [(hook_name(t, "hook_state"), teach) for t in range(n_steps)]


@dataclass
class Chunk:
    """One chunk of a batched run: its rows of the full batch, its token batch, output and cache."""

    rows: np.ndarray  # [chunk] indices into the full batch
    tb: TokenBatch
    out: HookedOutput
    cache: dict


def cached_runs(model: Model, tb: TokenBatch, *, n_steps: int, names_filter=None, mode: str = "free",
                batch_size: int = 64, fwd_hooks: Sequence = (), progress: bool = False,
                desc: str = "runs") -> Iterator[Chunk]:
    """Run ``tb`` for exactly ``n_steps`` steps in chunks of ``batch_size`` graphs; yield each chunk's cache.

    names_filter: what to cache (a TransformerLens filter; ``workbench.hooks.sites_filter`` builds one).
    mode: ``free`` (the model reads its own states) or ``teacher`` (step t reads the teacher state t-1).
    fwd_hooks: extra hooks for every chunk (run before the caching hooks).
    """
    if mode not in MODES:
        raise WorkbenchError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if n_steps < 1:
        raise WorkbenchError(f"n_steps must be at least 1, got {n_steps}")
    hm = hooked(model)
    hm.ensure_steps(n_steps)
    starts = range(0, tb.batch, batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
        rows = np.arange(start, min(start + batch_size, tb.batch))
        sub = tb.select(rows)
        tokens = torch.from_numpy(sub.tokens).long().to(hm.device)
        hooks = list(fwd_hooks)
        if mode == "teacher":
            hooks += teacher_hooks(sub, n_steps, hm.device)
        out, cache = hm.run_with_cache(tokens, names_filter=names_filter if names_filter is not None else [],
                                       lengths=torch.from_numpy(sub.length).long(), n_steps=n_steps,
                                       return_type="output", fwd_hooks=hooks)
        yield Chunk(rows, sub, out, cache)


# --------------------------------------------------------------------------------------------- gather
@dataclass
class Samples:
    """Where samples sit and what they are: one row per sample, [sample] arrays."""

    graph: np.ndarray  # index of the graph in the batch (the group for splits)
    pos: np.ndarray  # position in the sequence
    node: np.ndarray  # the node whose name stands here (model order)
    owner: np.ndarray  # the node whose equation this position belongs to (== node at rhs)
    slot: np.ndarray  # operand slot 0..2 at operand occurrences, -1 at rhs
    depth: np.ndarray  # depth of ``node``
    value: np.ndarray  # true value of ``node``
    name: np.ndarray  # pool index of ``node``'s name
    operand_names: np.ndarray  # [sample, 3] pool names of ``owner``'s operands, -1 where absent

    def __len__(self) -> int:
        return len(self.graph)

    def select(self, keep: np.ndarray) -> "Samples":
        return Samples(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def node_samples(tb: TokenBatch, where: str) -> Samples:
    """Samples at every node's defining position (``rhs``) or at every operand occurrence (``operand``)."""
    g = tb.graphs
    names = np.where(g.parents >= 0, np.take_along_axis(g.names, np.maximum(g.parents, 0).reshape(g.batch, -1),
                                                        1).reshape(g.parents.shape), -1)  # [batch, node, 3]
    if where == "rhs":
        b, n = np.nonzero(g.valid)
        return Samples(b, tb.rhs_pos[b, n], n, n, np.full(len(b), -1), g.depth[b, n], g.value[b, n],
                       g.names[b, n], names[b, n])
    if where == "operand":
        b, n, s = np.nonzero((tb.operand_pos >= 0) & g.valid[..., None])
        p = g.parents[b, n, s]
        return Samples(b, tb.operand_pos[b, n, s], p, n, s, g.depth[b, p], g.value[b, p], g.names[b, p], names[b, n])
    raise WorkbenchError(f"positions must be 'rhs' or 'operand', got {where!r}")


@dataclass
class Gathered:
    """Residual streams at node positions over every step and residual point, with labels.

    acts[where]: [step, point, sample, d_model] float32; samples[where] says what each sample is.
    values_read[where]: [step, sample] the VALUE code that step t read at the sample's node's defining
    position (``empty`` = not written yet), from the run itself (so ``teacher`` runs read the teacher's).
    """

    acts: dict[str, np.ndarray]
    samples: dict[str, Samples]
    values_read: dict[str, np.ndarray]
    points: list[str]
    n_steps: int
    mode: str
    empty: int
    modulus: int


def gather(model: Model, tb: TokenBatch, *, n_steps: int, mode: str = "free", where: Sequence[str] = ("rhs", "operand"),
           points: Sequence[tuple[str, int]] | None = None, batch_size: int = 64, progress: bool = False) -> Gathered:
    """The residual stream at every (step, point) at the node positions ``where``, with labels.

    >>> from workbench.model.config import ModelConfig
    >>> from workbench.task.config import TaskConfig
    >>> model = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16), TaskConfig(n_names=16)).eval()
    >>> tb = sample_batch(model, 8, 4)
    >>> g = gather(model, tb, n_steps=2, where=["rhs"])
    >>> g.acts["rhs"].shape, g.points
    ((2, 3, 32, 16), ['L0.pre', 'L0.mid', 'L0.post'])
    """
    hm = hooked(model)
    points = list(points) if points is not None else residual_points(hm.cfg.n_layers)
    samples = {w: node_samples(tb, w) for w in where}
    d = hm.cfg.d_model
    acts = {w: np.zeros((n_steps, len(points), len(s), d), dtype=np.float32) for w, s in samples.items()}
    read = {w: np.zeros((n_steps, len(s)), dtype=np.int64) for w, s in samples.items()}
    sites = sorted({site for site, _ in points})
    layers = sorted({layer for _, layer in points})
    keep = sites_filter(*sites, layers=layers)
    for chunk in cached_runs(hm, tb, n_steps=n_steps, names_filter=keep, mode=mode, batch_size=batch_size,
                             progress=progress, desc="gather"):
        local = np.full(tb.batch, -1)
        local[chunk.rows] = np.arange(len(chunk.rows))
        states = chunk.out.states.cpu()  # [step + 1, chunk, pos, factor]
        for w, s in samples.items():
            mine = np.flatnonzero(local[s.graph] >= 0)
            b = torch.from_numpy(local[s.graph[mine]])
            pos = torch.from_numpy(s.pos[mine])
            rhs = torch.from_numpy(tb.rhs_pos[s.graph[mine], s.node[mine]])
            for t in range(n_steps):
                read[w][t, mine] = states[t, b, rhs, F_VALUE].numpy()
                for i, (site, layer) in enumerate(points):
                    act = chunk.cache[hook_name(t, site, layer)]  # [chunk, pos, d_model]
                    acts[w][t, i, mine] = act[b, pos].float().cpu().numpy()
    return Gathered(acts, samples, read, [point_label(s, l) for s, l in points], n_steps, mode,
                    hm.vocab.empty, hm.task.modulus)


__all__ = ["MODES", "residual_points", "point_label", "sample_batch", "default_steps", "teacher_hooks", "Chunk",
           "cached_runs", "Samples", "node_samples", "Gathered", "gather"]

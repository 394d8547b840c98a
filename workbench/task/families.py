"""Graph families that stress one axis a graph can grow along: size, depth, fan-out, distance, leaves.

The paper's law (``sample_graphs``) almost never lets one variable be read by more than ~8 later
equations, so a model trained on it alone may never meet a *hub*: a variable that dozens of equations
read. Each family here is the paper's law plus one deliberate change, so that a failure points at
one axis:

============  =====================================================================================
family        what grows
============  =====================================================================================
uniform       nothing: the paper's law, uncapped depth (the reference)
deep          depth: parents only among the 3 latest nodes, so depth ~ N / 2
hub           fan-out: 1-2 early variables are each read by about N / 4 later equations
hub-chain     fan-out and depth at once: ``v_i = v_{i-1} + w`` chains that all re-read one ``w``
far           distance: every non-leaf reads at least one of the first 6 nodes (uses far from definitions)
leafy         number of leaves: a third of the nodes are leaves
============  =====================================================================================

``add_hubs`` is also the training-time transform (``Phase.hubs``): training graphs may hold hubs
read by at most ``Phase.max_fan_out`` (12) equations; the ``hub`` family asks for 30-60.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig
from workbench.task.graphs import Graphs, compute_depth, evaluate, sample_graphs, to_model_order


def fan_out(g: Graphs) -> np.ndarray:
    """[batch, node] how many later equations read each node (each reader counted once)."""
    B, n = g.batch, g.max_nodes
    reads = np.zeros((B, n + 1), dtype=np.int64)
    par = np.where(g.parents >= 0, g.parents, n)  # [batch, node, 3]; n is a sink column
    rows = np.broadcast_to(np.arange(B)[:, None, None], par.shape)
    # a node reads each distinct parent once: parents are distinct by construction
    np.add.at(reads, (rows.ravel(), par.ravel()), 1)
    return reads[:, :n]


def _rebuild(g: Graphs, parents: np.ndarray) -> Graphs:
    """The graphs with new parents (each still earlier on the node axis): depths, values, model order."""
    depth = compute_depth(parents, g.valid)
    value = np.where(g.valid, evaluate(parents, g.ops, g.leaf_value, g.modulus), -1)
    # an operation slot exists iff its parent slot does; rewiring never changes the number of parents
    return to_model_order(Graphs(parents, g.ops, g.leaf_value, value, depth, g.names, g.n_nodes, g.modulus))


def add_hubs(g: Graphs, rng: np.random.Generator, *, readers: tuple[int, int] = (2, 12), n_hubs: tuple[int, ...] = (1, 2),
             hub_pool: int = 6) -> Graphs:
    """Rewire graphs so that 1-2 hub variables are each read by many later equations.

    Hubs are drawn among the first ``hub_pool`` nodes in model order (the leaves by default). Each hub
    aims at a number of readers drawn uniformly from ``readers`` = (lo, hi) and never gets more than
    ``hi``: every later node deeper than the hub reads it, in place of one of its own parents, with
    the probability that meets the aim (drawn node by node, so the count lands on it). A node's depth is 1 + its deepest parent's, and the hub is
    shallower than the node, so no depth grows: a depth cap of the source graphs still holds.
    Vectorized over graphs; one loop over nodes.
    """
    lo, hi = readers
    if not 1 <= lo <= hi:
        raise WorkbenchError(f"readers must be a range (lo, hi) with 1 <= lo <= hi, got {readers}")
    B, n = g.batch, g.max_nodes
    parents = g.parents.copy()
    pool = min(hub_pool, n)
    rows, node = np.arange(B), np.arange(n)
    k_hubs = np.asarray(n_hubs)[rng.integers(0, len(n_hubs), size=B)]  # [batch]
    hubs = np.argsort(rng.random((B, pool)), axis=1)[:, :max(n_hubs)]  # [batch, hub] distinct per graph
    hub_on = np.arange(hubs.shape[1])[None, :] < k_hubs[:, None]  # [batch, hub]
    depth = g.depth
    for h in range(hubs.shape[1]):
        hub = hubs[:, h]
        hub_depth = depth[rows, hub]
        eligible = g.valid & (node[None, :] > hub[:, None]) & (depth > hub_depth[:, None])  # [batch, node]
        aim = np.floor(rng.uniform(lo, hi + 1, size=B))
        left = np.cumsum(eligible[:, ::-1], axis=1)[:, ::-1]  # [batch, node] eligible nodes from here on
        count = (parents == hub[:, None, None]).any(-1).sum(-1)  # [batch] readers the hub already has
        for i in range(n):
            p_read = np.clip((aim - count) / np.maximum(left[:, i], 1), 0.0, 1.0)  # sequential: meets the aim
            n_par = (parents[:, i] >= 0).sum(-1)
            slot = (rng.random(B) * np.maximum(n_par, 1)).astype(np.int64)
            old = parents[rows, i, slot]
            keeps_hub = (old[:, None] == hubs[:, :h]).any(-1) if h else np.zeros(B, dtype=bool)  # never drop another hub
            take = (hub_on[:, h] & eligible[:, i] & (n_par > 0) & ~(parents[:, i] == hub[:, None]).any(-1)
                    & ~keeps_hub & (count < hi) & (rng.random(B) < p_read))
            parents[rows[take], i, slot[take]] = hub[take]
            count += take
    return _rebuild(g, parents)


@dataclass(frozen=True)
class Family:
    """A named way to sample graphs of N nodes that stresses one axis."""

    name: str
    axis: str
    sample: Callable[[int, int, np.random.Generator, TaskConfig], Graphs]


HUB_READERS = (30, 60)
"""Readers per hub in the ``hub`` family: far beyond the training cap of 12 (``Phase.max_fan_out``)."""
HUB_SHARE = 0.45
"""At small N a hub is read by at most this share of the non-leaf nodes (two hubs share them)."""


def _uniform(n: int, count: int, rng: np.random.Generator, task: TaskConfig) -> Graphs:
    return sample_graphs(n, count, rng=rng, task=task)


def _deep(n: int, count: int, rng: np.random.Generator, task: TaskConfig) -> Graphs:
    return sample_graphs(n, count, rng=rng, task=task, recent=3)


def _hub(n: int, count: int, rng: np.random.Generator, task: TaskConfig) -> Graphs:
    g = sample_graphs(n, count, rng=rng, task=task)
    most = max(1, int(HUB_SHARE * (n - 6)))  # two hubs, each read by 30-60 equations where N allows
    return add_hubs(g, rng, readers=(min(HUB_READERS[0], most), min(HUB_READERS[1], most)), n_hubs=(2,))


def _hub_chain(n: int, count: int, rng: np.random.Generator, task: TaskConfig) -> Graphs:
    """``w`` (a leaf) and a chain ``v_i = v_{i-1} + w`` through every other node: depth ~N, fan-out ~N."""
    g = sample_graphs(n, count, rng=rng, task=task, recent=1, fan_in=(1,))  # a pure copy chain off the leaves
    parents = g.parents.copy()
    w = rng.integers(0, 6, size=count)  # the hub: one of the leaves
    chain = (g.depth > 0) & g.valid  # [batch, node]
    if task.max_fan_in >= 2:
        parents[:, :, 1] = np.where(chain, w[:, None], parents[:, :, 1])
        # a chain node whose previous node is itself the hub would read it twice: read the hub once
        parents[:, :, 1] = np.where(parents[:, :, 1] == parents[:, :, 0], -1, parents[:, :, 1])
    ops = g.ops.copy()
    op0 = task.op_indices[0]
    ops[:, :, 0] = np.where(parents[:, :, 1] >= 0, np.where(ops[:, :, 0] >= 0, ops[:, :, 0], op0), -1)
    g = Graphs(parents, ops, g.leaf_value, g.value, g.depth, g.names, g.n_nodes, g.modulus)
    return _rebuild(g, parents)


def _far(n: int, count: int, rng: np.random.Generator, task: TaskConfig) -> Graphs:
    g = sample_graphs(n, count, rng=rng, task=task)
    parents = g.parents.copy()
    leaf_read = (parents >= 0) & (parents < 6)
    need = g.valid & (g.depth > 0) & ~leaf_read.any(-1)  # [batch, node] reads no leaf yet
    slot0 = parents[:, :, 0]
    leaf = rng.integers(0, 6, size=slot0.shape)
    dup = (parents[:, :, 1:] == leaf[..., None]).any(-1)
    parents[:, :, 0] = np.where(need & ~dup, leaf, slot0)
    return _rebuild(g, parents)


def _leafy(n: int, count: int, rng: np.random.Generator, task: TaskConfig) -> Graphs:
    return sample_graphs(n, count, rng=rng, task=task, n_leaves=max(6, n // 3))


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("uniform", "size (the paper's law)", _uniform),
    Family("deep", "depth", _deep),
    Family("hub", "fan-out", _hub),
    Family("hub-chain", "fan-out and depth", _hub_chain),
    Family("far", "distance from definition to use", _far),
    Family("leafy", "number of leaves", _leafy),
)}


def hub_chain_text(links: int, *, hub: str = "w", hub_value: int = 2, start: int = 1) -> str:
    """The issue's example as text: ``w = 2``, ``v0 = 1``, ``v_i = v_(i-1) + w`` for i = 1..links."""
    lines = [f"{hub} = {hub_value}", f"v0 = {start}"] + [f"v{i} = v{i - 1} + {hub}" for i in range(1, links + 1)]
    return "\n".join(lines)


def hub_fan_text(readers: int, *, hub: str = "w", hub_value: int = 5, leaf_value: int = 3) -> str:
    """Fan-out without depth: ``w = 5``, ``c = 3`` and ``a_i = w + c`` for i = 1..readers (every a_i has depth 1)."""
    lines = [f"{hub} = {hub_value}", f"c = {leaf_value}"] + [f"a{i} = {hub} + c" for i in range(1, readers + 1)]
    return "\n".join(lines)


PRESETS: dict[str, str] = {
    "fan-out: a 60-link chain that re-reads one variable (v_i = v_(i-1) + w)": hub_chain_text(60),
    "fan-out without depth: 60 equations a_i = w + c": hub_fan_text(60),
    "fan-out at the training cap: a 12-link chain": hub_chain_text(12),
}
"""Problems that stress one axis, one click away in the app (Problem page) and the notebooks."""


def family(name: str) -> Family:
    """The family called ``name``; WorkbenchError listing the known ones otherwise."""
    if name not in FAMILIES:
        raise WorkbenchError(f"unknown graph family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def sample_family(name: str, n_nodes: int, count: int, *, rng: np.random.Generator, task: TaskConfig = TaskConfig()) -> Graphs:
    """``count`` graphs of ``n_nodes`` nodes from the family ``name``, in model order."""
    return family(name).sample(n_nodes, count, rng, task)


__all__ = ["FAMILIES", "PRESETS", "Family", "add_hubs", "fan_out", "family", "hub_chain_text", "hub_fan_text", "sample_family"]

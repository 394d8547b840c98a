"""The app's server side: models loaded once, each run computed once per (model, problem, seed) and cached.

A browser session keeps only a small ``RunKey`` (JSON) in a ``dcc.Store``; every callback asks this
module for the run, a step's attention patterns or an injection. Each result is computed once, under
the model lock (``workbench.hooks.guard``), and kept in a small per-process LRU cache whose key is the
whole input (and the weights' version), so any number of sessions share results without mixing them,
and scrubbing steps only re-renders.

Inputs from users are limited here (``MAX_NODES``, ``MAX_TEXT_CHARS``, ...) and every bad input raises a
one-line ``WorkbenchError``. Importing this module loads neither torch nor a model.

>>> key = RunKey.from_json({"model": "default", "text": "a = 3", "seed": 0})
>>> key.to_json()
{'model': 'default', 'text': 'a = 3', 'seed': 0}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.cache import LRU, clear_all
from workbench.analysis import routing
from workbench.errors import WorkbenchError
from workbench.hooks.guard import MODEL_LOCK
from workbench.run_view import RunView, parent_attention

MAX_NODES = 128  # variables per problem (the largest evaluated graphs)
MAX_TEXT_CHARS = 20_000  # characters of a pasted problem
MAX_LINES = 1_000  # lines of a pasted problem (comments and blank lines included)
MIN_NODES = 7  # generated graphs: 6 leaves plus at least one node
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class RunKey:
    """What identifies a run: the model's name, the problem's canonical text, the seed mapping names onto the pool."""

    model: str
    text: str
    seed: int = 0

    def to_json(self) -> dict:
        return {"model": self.model, "text": self.text, "seed": self.seed}

    @property
    def digest(self) -> str:
        """A short fingerprint of the key (e.g. to tell whether a figure already shows this run)."""
        import hashlib

        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, data: Any) -> "RunKey":
        """The key a store holds; ``WorkbenchError`` for anything else (stores come from browsers)."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), str) or not isinstance(data.get("text"), str):
            raise WorkbenchError("no problem loaded yet; enter or generate one on the Problem page")
        seed = data.get("seed", 0)
        if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise WorkbenchError(f"the seed must be an integer 0..{MAX_SEED}")
        if len(data["text"]) > MAX_TEXT_CHARS:
            raise WorkbenchError(f"the problem is longer than {MAX_TEXT_CHARS} characters")
        return cls(data["model"], data["text"], seed)


#: Runs and injections are small (the per-step attention summaries are [step, layer, head, node]);
#: patterns of one N = 128 step are ~6 MB, so they are held by bytes. 8 concurrent sessions stayed
#: within these sizes in the soak test (tests/app/test_soak.py).
RUNS_KEPT, PATTERN_BYTES = 256, 192 * 2**20
_RUNS, _PATTERNS = LRU(RUNS_KEPT), LRU(10_000, budget=PATTERN_BYTES)
_MODELS: dict[str, tuple[int, Any]] = {}  # name -> (weights version, HookedLooped)


def clear_caches() -> None:
    """Forget every model and result (tests; a re-exported model is picked up without this)."""
    with MODEL_LOCK:
        _MODELS.clear()
        clear_all()


# ------------------------------------------------------------------------------------------- models
def model_names() -> list[str]:
    """The models the app offers: every folder in ``models/`` (or ``$WORKBENCH_MODELS``)."""
    from workbench.model.checkpoint import available_models

    return available_models()


def model_folder(name: str) -> Path:
    from workbench.model.checkpoint import resolve_model

    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise WorkbenchError(f"unknown model {name!r}; pick one of {', '.join(model_names()) or 'none'}")
    return resolve_model(name)


def _version(folder: Path) -> int:
    from workbench.model.checkpoint import WEIGHTS

    return (folder / WEIGHTS).stat().st_mtime_ns


def model_task(name: str):
    """The ``TaskConfig`` of model ``name``, read from its config.json (no weights loaded)."""
    from workbench.model.checkpoint import read_config
    from workbench.task.config import TaskConfig

    return TaskConfig.from_dict(read_config(model_folder(name))["task"])


def get_model(name: str):
    """``(version, HookedLooped)`` of model ``name``, loaded once (again when its weights file changes)."""
    folder = model_folder(name)
    version = _version(folder)
    cached = _MODELS.get(name)
    if cached is not None and cached[0] == version:
        return cached
    from workbench.hooks import hooked
    from workbench.model.checkpoint import load_model

    with MODEL_LOCK:
        cached = _MODELS.get(name)
        if cached is None or cached[0] != version:
            cached = (version, hooked(load_model(folder)))
            _MODELS[name] = cached
    return cached


# ------------------------------------------------------------------------------------------ problems
def read_problem(text: str, task):
    """The ``Problem`` written in ``text``, within the app's limits (``WorkbenchError`` with ``line N:`` if not)."""
    from workbench.task.text import parse_problem

    if not isinstance(text, str) or not text.strip():
        raise WorkbenchError("the problem is empty; write one equation per line, e.g. 'a = 3' then 'b = a + 1'... "
                             "or generate one")
    if len(text) > MAX_TEXT_CHARS:
        raise WorkbenchError(f"the problem has {len(text)} characters; the app takes at most {MAX_TEXT_CHARS}")
    lines = text.count("\n") + 1
    if lines > MAX_LINES:
        raise WorkbenchError(f"the problem has {lines} lines; the app takes at most {MAX_LINES}")
    problem = parse_problem(text, task)
    if len(problem) > MAX_NODES:
        raise WorkbenchError(f"the problem has {len(problem)} variables; the app takes at most {MAX_NODES}")
    return problem


def make_key(model: str, text: str, seed: int = 0) -> RunKey:
    """The ``RunKey`` of ``text`` on ``model``: the text is checked and put in canonical (model) order."""
    from workbench.task.text import format_problem

    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise WorkbenchError(f"the seed must be an integer 0..{MAX_SEED}")
    return RunKey(model, format_problem(read_problem(text, model_task(model))), seed)


def generate_problem(model: str, n_nodes: Any, seed: Any) -> str:
    """The text of a random graph of ``n_nodes`` nodes (the paper's law, no depth cap) for ``model``'s task."""
    from workbench.task.graphs import sample_graphs
    from workbench.task.text import format_problem, graphs_to_problems

    task = model_task(model)
    top = min(MAX_NODES, task.n_names)
    if not isinstance(n_nodes, int) or not MIN_NODES <= n_nodes <= top:
        raise WorkbenchError(f"the size must be a whole number of nodes from {MIN_NODES} to {top}, got {n_nodes!r}")
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise WorkbenchError(f"the seed must be a whole number from 0 to {MAX_SEED}, got {seed!r}")
    graphs = sample_graphs(n_nodes, 1, rng=np.random.default_rng(seed), task=task)
    return format_problem(graphs_to_problems(graphs)[0])


def token_batch(key: RunKey, task):
    """``(problem, name map, TokenBatch)`` of ``key`` through the library's one encoder."""
    from workbench.task.encoding import encode

    problem = read_problem(key.text, task)
    tb, (mapping,) = encode([problem], task, seed=key.seed)
    return problem, mapping, tb


# ------------------------------------------------------------------------------------------------ runs
def get_run(key: RunKey) -> RunView:
    """The run of ``key``: computed once (with every step's parent-attention scores), then served from the cache."""
    version, hm = get_model(key.model)
    return _RUNS.get_or_compute((key, version), lambda: _compute_run(key, hm))


def _compute_run(key: RunKey, hm) -> RunView:
    import torch

    from workbench.hooks.interventions import trajectory
    from workbench.hooks.names import parse_hook_name, sites_filter

    problem, mapping, tb = token_batch(key, hm.task)
    n = len(problem)
    rhs, operand_pos = tb.rhs_pos[0, :n], tb.operand_pos[0, :n]
    parents = [[p for p in row if p >= 0] for row in tb.graphs.parents[0, :n].tolist()]
    rhs_t = torch.from_numpy(rhs).long().to(hm.device)
    copy: dict[tuple[int, int], np.ndarray] = {}
    lookup: dict[tuple[int, int], np.ndarray] = {}
    layout = routing.Layout.of(tb)
    filled: dict[int, np.ndarray] = {}  # step -> [batch, pos] definitions written in the state it reads
    measured: dict[tuple[int, int], dict] = {}

    def read_state(state, hook):
        filled[parse_hook_name(hook.name).step] = routing.filled_positions(state.cpu().numpy(), hm.vocab)

    def scores(pattern, hook):  # pattern [batch, head, query, key]
        site = parse_hook_name(hook.name)
        rows = pattern[0][:, rhs_t].float().cpu().numpy()  # [head, node, key]
        copy[site.step, site.layer], lookup[site.step, site.layer] = parent_attention(rows, rhs, operand_pos, parents)
        measured[site.step, site.layer] = routing.measure_step([pattern], layout, filled[site.step])

    traj = trajectory(hm, tb, fwd_hooks=[(sites_filter("hook_state"), read_state),
                                         (sites_filter("attn.hook_pattern"), scores)])
    n_ran, n_layers = traj.n_steps, hm.cfg.n_layers
    # one definition of steps (workbench.run_view): states up to the fixed point; the confirming step's
    # output repeats it, so it is dropped, while its attention (the step reading the fixed point) is kept
    last = min(int(traj.iterations[0]), n_ran)
    stack = lambda d: np.stack([np.stack([d[t, l] for l in range(n_layers)]) for t in range(n_ran)]).astype(np.float32)  # noqa: E731
    return RunView(
        model=key.model, names=problem.names, equations=[str(eq) for eq in problem.equations],
        depth=tb.graphs.depth[0, :n].copy(), parents=parents, truth=tb.graphs.value[0, :n].copy(),
        values=traj.values[:last + 1, 0, :n].numpy(), states=traj.states[:last + 1, 0].numpy().astype(np.int16),
        rhs_pos=rhs.copy(), operand_pos=operand_pos.copy(), pool_names={v: k for k, v in mapping.items()},
        vocab=hm.vocab, modulus=hm.task.modulus, iterations=int(traj.iterations[0]), converged=bool(traj.converged[0]),
        n_layers=n_layers, n_heads=hm.cfg.n_heads, looped=hm.cfg.looped,
        continuous=hm.cfg.hidden_crosses_steps, operations=tuple(hm.task.operations),
        copy=stack(copy) if n_ran and copy else None, lookup=stack(lookup) if n_ran and lookup else None,
        **_routing_fields(measured, n_ran, n_layers))


def _routing_fields(measured: dict[tuple[int, int], dict], n_ran: int, n_layers: int) -> dict:
    """``RunView.routing`` and ``gather_slot`` from per-(step, layer) ``routing.measure_step`` sums."""
    if not n_ran or not measured:
        return {"routing": None, "gather_slot": None}
    per_step = [{k: (np.concatenate([measured[t, l][k][0] for l in range(n_layers)]), measured[t, 0][k][1])
                 for k in measured[t, 0]} for t in range(n_ran)]
    r = routing.Routing.from_sums(per_step)
    return {"routing": {m: v.astype(np.float32) for m, v in r.measures.items()}, "gather_slot": r.gather_slot.astype(np.float32)}


def pattern_state(run: RunView, state: int) -> int:
    """The step whose attention patterns to show for ``state`` (``RunView.reading_step``): the title, the
    scores and the patterns of a page all come from this one number."""
    return run.reading_step(state)


def step_patterns(key: RunKey, state: int) -> np.ndarray:
    """[layer, head, node, pos] float32: attention from each node's defining position in the step reading ``state``."""
    return _step_attention(key, state)[0]


def step_operand_lookups(key: RunKey, state: int) -> np.ndarray:
    """[layer, head, node, slot] float32: attention from each operand token onto its variable's defining
    position (the name lookup), in the same step as ``step_patterns`` (0 for an empty slot)."""
    return _step_attention(key, state)[1]


def _step_attention(key: RunKey, state: int) -> tuple[np.ndarray, np.ndarray]:
    """Both of one step's attention views, computed together from one run and cached as one entry."""
    run = get_run(key)
    t = pattern_state(run, state)
    version, hm = get_model(key.model)
    return _PATTERNS.get_or_compute((key, version, t), lambda: _compute_patterns(key, hm, run, t))


def _compute_patterns(key: RunKey, hm, run: RunView, t: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from workbench.hooks.names import hook_name

    if run.continuous:  # the hidden state is not in the decoded states: rerun from the input
        _, _, tb = token_batch(key, hm.task)
        tokens, step, n_steps = torch.from_numpy(tb.tokens).long(), t, t + 1
    else:  # a discrete state is the whole recurrent state: one step from it reproduces the run's step t
        tokens, step, n_steps = torch.from_numpy(run.states[t][None].astype(np.int64)), 0, 1
    names = [hook_name(step, "attn.hook_pattern", layer) for layer in range(run.n_layers)]
    _, cache = hm.run_with_cache(tokens.to(hm.device), lengths=torch.tensor([run.length]), n_steps=n_steps,
                                 names_filter=names, return_type="state")
    patterns = torch.stack([cache[name][0].float().cpu() for name in names])  # [layer, head, query, key]
    rows = patterns[:, :, torch.from_numpy(run.rhs_pos).long()]  # [layer, head, node, pos]
    query, key_pos = operand_lookup_positions(run)  # [node, slot] each, -1 for an empty slot
    lookups = patterns[:, :, query.clip(min=0), key_pos.clip(min=0)] * torch.from_numpy(query >= 0)
    return rows.numpy().astype(np.float32), lookups.numpy().astype(np.float32)


def operand_lookup_positions(run: RunView) -> tuple[np.ndarray, np.ndarray]:
    """``(operand token, its variable's defining position)`` of every node's operand slots, [node, slot]
    each (-1 for an empty slot): the query and key of the name lookup.

    >>> q, k = operand_lookup_positions(RunView.example())
    >>> q.tolist(), k.tolist()
    ([[-1, -1, -1], [4, -1, -1], [7, 9, -1]], [[-1, -1, -1], [2, -1, -1], [2, 6, -1]])
    """
    query = run.operand_pos.astype(np.int64)
    parent = np.full(query.shape, -1, dtype=np.int64)
    for node, parents in enumerate(run.parents):  # nodes, not tokens: at most 128 short lists
        parent[node, :len(parents)] = parents
    key_pos = np.where(parent >= 0, run.rhs_pos[parent.clip(min=0)], -1)
    return query, key_pos


__all__ = ["RunKey", "MAX_NODES", "MAX_TEXT_CHARS", "MAX_LINES", "MIN_NODES", "model_names", "model_task",
           "get_model", "read_problem", "make_key", "generate_problem", "get_run", "step_patterns", "step_operand_lookups",
           "operand_lookup_positions", "pattern_state", "clear_caches"]

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
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.analysis import routing
from workbench.errors import WorkbenchError
from workbench.hooks.guard import MODEL_LOCK
from workbench.run_view import RunView, parent_attention, status_of

MAX_NODES = 128  # variables per problem (the largest evaluated graphs)
MAX_TEXT_CHARS = 20_000  # characters of a pasted problem
MAX_LINES = 1_000  # lines of a pasted problem (comments and blank lines included)
MIN_NODES = 7  # generated graphs: 6 leaves plus at least one node
MAX_SEED = 2**31 - 1
MAX_PROBE_BYTES = 5_000_000  # a probe results file larger than this is not shown


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


class LRU:
    """A small thread-safe LRU cache whose misses are computed one at a time under the model lock.

    size: the most entries kept; budget: the most bytes kept (entries weighed by ``nbytes``), so a
    cache of big arrays holds many small problems' results and few large ones'. Concurrent requests
    for one key compute it once: the second waits for the model lock, then finds the result.
    """

    def __init__(self, size: int, budget: int | None = None) -> None:
        self.size, self.budget = size, budget
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        hit = self.get(key)
        if hit is not None:
            return hit
        with MODEL_LOCK:  # one computation at a time; a second session asking for the same key waits, then hits
            hit = self.get(key)
            if hit is not None:
                return hit
            value = compute()
        with self._lock:
            self._data[key] = value
            self._bytes[key] = nbytes(value) if self.budget is not None else 0
            while len(self._data) > 1 and (len(self._data) > self.size or
                                           (self.budget is not None and sum(self._bytes.values()) > self.budget)):
                old, _ = self._data.popitem(last=False)
                self._bytes.pop(old, None)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes.clear()


def nbytes(value: Any) -> int:
    """The bytes of the arrays in ``value`` (an array, or a tuple or list of them)."""
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    return int(getattr(value, "nbytes", 0))


#: Runs and injections are small (the per-step attention summaries are [step, layer, head, node]);
#: patterns of one N = 128 step are ~6 MB, so they are held by bytes. 8 concurrent sessions stayed
#: within these sizes in the soak test (tests/app/test_soak.py).
RUNS_KEPT, INJECTIONS_KEPT, PATTERN_BYTES = 256, 256, 192 * 2**20
_RUNS, _PATTERNS, _INJECTIONS = LRU(RUNS_KEPT), LRU(10_000, budget=PATTERN_BYTES), LRU(INJECTIONS_KEPT)
_MODELS: dict[str, tuple[int, Any]] = {}  # name -> (weights version, HookedLooped)


def clear_caches() -> None:
    """Forget every model and result (tests; a re-exported model is picked up without this)."""
    with MODEL_LOCK:
        _MODELS.clear()
        for cache in (_RUNS, _PATTERNS, _INJECTIONS):
            cache.clear()


# ------------------------------------------------------------------------------------------- models
def model_names() -> list[str]:
    """The models the app offers: every folder in ``models/`` (or ``$WORKBENCH_MODELS``)."""
    from workbench.model.checkpoint import available_models

    return available_models()


def _folder(name: str) -> Path:
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

    return TaskConfig.from_dict(read_config(_folder(name))["task"])


def get_model(name: str):
    """``(version, HookedLooped)`` of model ``name``, loaded once (again when its weights file changes)."""
    folder = _folder(name)
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


def _token_batch(key: RunKey, task):
    from workbench.task.text import problems_to_graphs
    from workbench.task.tokens import tokenize
    from workbench.task.vocab import Vocab

    problem = read_problem(key.text, task)
    graphs, mappings = problems_to_graphs([problem], task, seed=key.seed)
    return problem, mappings[0], tokenize(graphs, Vocab.for_task(task))


# ------------------------------------------------------------------------------------------------ runs
def get_run(key: RunKey) -> RunView:
    """The run of ``key``: computed once (with every step's parent-attention scores), then served from the cache."""
    version, hm = get_model(key.model)
    return _RUNS.get_or_compute((key, version), lambda: _compute_run(key, hm))


def _compute_run(key: RunKey, hm) -> RunView:
    import torch

    from workbench.hooks.interventions import trajectory
    from workbench.hooks.names import parse_hook_name, sites_filter

    problem, mapping, tb = _token_batch(key, hm.task)
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
        continuous=hm.cfg.latent == "continuous" and hm.cfg.looped, operations=tuple(hm.task.operations),
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
    run = get_run(key)
    t = pattern_state(run, state)
    version, hm = get_model(key.model)
    return _PATTERNS.get_or_compute((key, version, t), lambda: _compute_patterns(key, hm, run, t))


def _compute_patterns(key: RunKey, hm, run: RunView, t: int) -> np.ndarray:
    import torch

    from workbench.hooks.names import hook_name

    if run.continuous:  # the hidden state is not in the decoded states: rerun from the input
        _, _, tb = _token_batch(key, hm.task)
        tokens, step, n_steps = torch.from_numpy(tb.tokens).long(), t, t + 1
    else:  # a discrete state is the whole recurrent state: one step from it reproduces the run's step t
        tokens, step, n_steps = torch.from_numpy(run.states[t][None].astype(np.int64)), 0, 1
    names = [hook_name(step, "attn.hook_pattern", layer) for layer in range(run.n_layers)]
    _, cache = hm.run_with_cache(tokens.to(hm.device), lengths=torch.tensor([run.length]), n_steps=n_steps,
                                 names_filter=names, return_type="state")
    rhs = torch.from_numpy(run.rhs_pos).long()
    rows = [cache[name][0][:, rhs.to(cache[name].device)].float().cpu() for name in names]  # layer x [head, node, pos]
    return torch.stack(rows).numpy().astype(np.float32)


# ------------------------------------------------------------------------------------------ injection
@dataclass
class InjectionView:
    """One injection into one model's run: the clean and corrupted values, and what became of the error.

    "Repaired" is claimed only for a value that had been written (the clean run held a value for the node
    in the overwritten state) and was then corrected: an injection into a node the run has not written
    yet is overwritten by the model's first write, which is computing, not repairing.
    """

    model: str
    state: int  # the overwritten state (step ``state`` read the error)
    node: int
    name: str
    names: list[str]  # [node] every node's name, model order
    value: int  # the value written
    truth: np.ndarray  # [node]
    clean: np.ndarray  # [state, node] values of the clean run
    corrupted: np.ndarray  # [state, node] values of the corrupted run
    vocab: Any
    clean_steps: int | None = None  # steps until each run's state stopped changing (RunView.n_steps)
    corrupted_steps: int | None = None

    @property
    def true_value(self) -> int:
        return int(self.truth[self.node])

    @property
    def final_value(self) -> int:
        return int(self.corrupted[-1, self.node])

    @property
    def clean_value(self) -> int:
        """The node's value in the clean run's overwritten state (EMPTY: not written yet)."""
        return int(self.clean[min(self.state, len(self.clean) - 1), self.node])

    @property
    def was_written(self) -> bool:
        """The clean run had written the node by the overwritten state: there was a value to corrupt."""
        return self.clean_value != self.vocab.empty

    @property
    def was_error(self) -> bool:
        """The injection put a wrong value where a value had been written."""
        return self.was_written and self.value != self.true_value

    @property
    def ends_right(self) -> bool:
        return self.final_value == self.true_value

    @property
    def repaired(self) -> bool:
        """A written value was corrupted and the node holds its true value at the end."""
        return self.was_error and self.ends_right

    @property
    def repair_state(self) -> int:
        """The first state after the injection from which the node holds its true value for good; -1 if not repaired."""
        if not self.repaired:
            return -1
        right = self.corrupted[:, self.node] == self.true_value
        wrong_after = np.nonzero(~right[self.state:])[0]
        return self.state + (int(wrong_after[-1]) + 1 if len(wrong_after) else 0)

    @property
    def recovered(self) -> bool:
        """Every node holds its true value at the end."""
        return bool((self.corrupted[-1] == self.truth).all())

    @property
    def same_as_clean(self) -> bool:
        return bool((self.corrupted[-1] == self.clean[-1]).all())

    def status(self) -> np.ndarray:
        """[state, node] NOT_YET / RIGHT / WRONG in the corrupted run."""
        return status_of(self.corrupted, self.truth, self.vocab)

    def outcome(self) -> str:
        """The one "Repaired: ..." sentence: yes or no for a corrupted written value; otherwise why it does not apply."""
        ends = f"{self.name} ends at {_label(self.final_value, self.vocab)} (true value {self.true_value})"
        if not self.was_written:
            first = np.nonzero(self.clean[:, self.node] != self.vocab.empty)[0]
            when = f"it first holds a value in state {int(first[0])}" if len(first) else "it never holds a value"
            return (f"Repaired: does not apply: the clean run had not written {self.name} yet in state {self.state} "
                    f"({when}), so there was no value to corrupt; {ends}.")
        if self.value == self.true_value:
            return f"Repaired: does not apply: the written value is the true value, nothing to repair; {ends}."
        if self.repaired:
            u = self.repair_state
            return (f"Repaired: yes, {self.name} holds {self.true_value} again from state {u} "
                    f"({u - self.state} step{'s' if u - self.state != 1 else ''} after the injection).")
        return f"Repaired: no, {ends}."

    def report(self) -> list[str]:
        """The outcome in a few sentences, for the page."""
        lines = [f"{self.model}: wrote {self.name} := {self.value} into state {self.state} (read by step {self.state}); "
                 f"true value {self.true_value}, the clean run held {_label(self.clean_value, self.vocab)}.",
                 self.outcome()]
        right, total = int((self.corrupted[-1] == self.truth).sum()), len(self.truth)
        steps = self.corrupted_steps if self.corrupted_steps is not None else len(self.corrupted) - 1
        clean = self.clean_steps if self.clean_steps is not None else len(self.clean) - 1
        lines.append(f"At the end: {right}/{total} nodes right ({'solved' if self.recovered else 'not solved'}); "
                     f"final state {'equals' if self.same_as_clean else 'differs from'} the clean run's; "
                     f"{steps} steps to a fixed point (clean run: {clean}).")
        return lines


def _label(code, vocab) -> str:
    from workbench.run_view import value_label

    return value_label(int(code), vocab)


def injection(key: RunKey, state: int, node: int, value: int | None = None, seed: int = 0) -> InjectionView:
    """Overwrite ``node``'s value in ``state`` of ``key``'s run (``value`` None: a random wrong one) and rerun."""
    run = get_run(key)
    if not isinstance(node, int) or not 0 <= node < run.n_nodes:
        raise WorkbenchError(f"pick a node of the problem (0..{run.n_nodes - 1}), got {node!r}")
    if not isinstance(state, int) or not 0 <= state <= run.n_steps:
        raise WorkbenchError(f"the state must be 0..{run.n_steps} (state 0 is the input, state {run.n_steps} the "
                             f"fixed point), got {state!r}")
    if value is not None and (not isinstance(value, int) or not 0 <= value < run.modulus):
        raise WorkbenchError(f"the value must be 0..{run.modulus - 1} (or blank for a random wrong value), got {value!r}")
    version, hm = get_model(key.model)
    return _INJECTIONS.get_or_compute((key, version, state, node, value, seed),
                                      lambda: _compute_injection(key, hm, run, state, node, value, seed))


def _compute_injection(key: RunKey, hm, run: RunView, state: int, node: int, value: int | None, seed: int) -> InjectionView:
    from workbench.hooks.interventions import inject_corruption

    _, _, tb = _token_batch(key, hm.task)
    inj = inject_corruption(hm, tb, state, nodes=[[node]], values=value, seed=seed)
    n = run.n_nodes
    return InjectionView(key.model, state, node, run.names[node], list(run.names), int(inj.injected[0, node]), run.truth.copy(),
                         inj.clean.values[:, 0, :n].numpy(), inj.corrupted.values[:, 0, :n].numpy(), run.vocab,
                         clean_steps=run.n_steps, corrupted_steps=int(inj.corrupted.iterations[0]))


# ------------------------------------------------------------------------------------- saved results
def model_evaluations() -> dict[str, list[dict]]:
    """{label: rows} of every model's accuracy against N: its eval.json, else its last training-time evaluation."""
    from workbench.model.checkpoint import models_dir, read_config

    curves: dict[str, list[dict]] = {}
    for name in model_names():
        folder = models_dir() / name
        try:
            record = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").is_file() else None
            if record and isinstance(record.get("sizes"), list) and record["sizes"]:
                curves[name] = record["sizes"]
                continue
            evals = read_config(folder).get("training", {}).get("evals") or []
            if evals and evals[-1].get("sizes"):
                curves[f"{name} (training eval at step {evals[-1].get('step', '?')})"] = evals[-1]["sizes"]
        except (OSError, ValueError, WorkbenchError, AttributeError):
            continue  # an unreadable file shows as a missing model, never as a traceback
    return curves


def model_robustness(model: str) -> dict[str, list[dict]]:
    """{family: rows} from ``models/<model>/robustness.json`` (``workbench robustness``); {} when absent or unreadable."""
    from workbench.model.card import read_robustness

    try:
        record = read_robustness(_folder(model))
    except WorkbenchError:  # no such model
        return {}
    return record["families"] if record else {}


def training_logs(model: str) -> dict[str, list[dict]]:
    """The model's training log (``main``) and failed branches from ``models/<model>/run/``; {} when none."""
    from workbench.training.curves import run_logs

    return run_logs(_folder(model) / "run")


def saved_head_effects(model: str) -> dict[tuple[int, int], tuple[str, float]]:
    """``(layer, head) -> (verdict, accuracy drop)`` of every head with a role in the model's saved
    ``probes/routing.json`` (the causal check of ``workbench.analysis.routing``); empty when not run."""
    for name, data in probe_results(model):
        if name != "routing.json" or not isinstance(data, dict):
            continue
        roles = (data.get("results") or {}).get("roles") or []
        return {(r["layer"], r["head"]): (r["verdict"], float(r.get("ablation_drop") or 0.0))
                for r in roles if isinstance(r, dict) and "verdict" in r and "layer" in r and "head" in r}
    return {}


def probe_results(model: str) -> list[tuple[str, Any]]:
    """``[(file name, parsed JSON or an error line)]`` of every ``*.json`` under ``models/<model>/probes/``."""
    folder = _folder(model) / "probes"
    out: list[tuple[str, Any]] = []
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        rel = str(path.relative_to(folder))
        if path.stat().st_size > MAX_PROBE_BYTES:
            out.append((rel, f"skipped: larger than {MAX_PROBE_BYTES // 1_000_000} MB"))
            continue
        try:
            out.append((rel, json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            out.append((rel, f"unreadable: {type(exc).__name__}"))
    return out


__all__ = ["RunKey", "LRU", "saved_head_effects", "MAX_NODES", "MAX_TEXT_CHARS", "MAX_LINES", "MIN_NODES", "model_names", "model_task",
           "get_model", "read_problem", "make_key", "generate_problem", "get_run", "step_patterns", "pattern_state",
           "InjectionView", "injection", "model_evaluations", "model_robustness", "probe_results", "clear_caches"]

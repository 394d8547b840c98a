"""``RunView``: one problem's run on one model, decoded into small numpy arrays that views read without the model.

The app and the notebooks render from it: node values and their status at every state, the token
sequence with user names, error-correction events, bottleneck code usage, and how much attention each
head pays to a node's parents. Nothing here touches a model; the app's server side (``app/state.py``)
computes and caches the views.

One definition of steps, shared with ``workbench solve`` and every page (``STEPS_SENTENCE``): state 0
is the input, step t reads state t and writes state t + 1, and a run takes ``n_steps`` steps, the
steps until its state stopped changing (``workbench solve``'s "iterations"). The loop ran one more
step to confirm the fixed point; it changed nothing, so its output is not a state of its own, but its
attention is kept: every state has the step that read it (``reading_step``), except the last state of
a run that hit the step cap. ``inject_corruption(step=t)`` overwrites state t.

>>> import numpy as np
>>> view = RunView.example()
>>> view.status(0).tolist(), view.status(view.n_steps).tolist()
([0, 0, 0], [1, 1, 2])
>>> [e.kind for e in view.events()]
['written right', 'written right', 'written wrong']
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass, field

import numpy as np

from workbench.task.config import ALL_OPERATIONS
from workbench.task.vocab import FACTORS, N_SYNTAX, OPERATION, SYNTAX_NAMES, VALUE, VARIABLE, Vocab

#: a node's status in a state: its VALUE is not written yet, right, or wrong
NOT_YET, RIGHT, WRONG = 0, 1, 2
STATUS_NAMES = ("not yet", "right", "wrong")

#: the definition of a step, said once on every page that shows states
STEPS_SENTENCE = ("State 0 is the input; step t reads state t and writes state t + 1. A run's step count is the "
                  "number of steps until its state stopped changing (what `workbench solve` prints as iterations); "
                  "one more step, which changed nothing, confirmed the fixed point.")

#: error-correction event kinds, by what a step did to a node's value
EVENT_KINDS = ("written right", "written wrong", "corrected", "broken", "rewritten wrong")


@dataclass(frozen=True)
class Event:
    """One change of a node's value: ``state`` is the first state holding the new value (step ``state - 1`` wrote it)."""

    state: int
    node: int
    kind: str
    before: int
    after: int


@dataclass
class RunView:
    """One problem run until its fixed point (or the cap), per node and per position. Shapes in comments."""

    model: str
    names: list[str]  # [node] user names, model order
    equations: list[str]  # [node] each node's equation, e.g. "c = a + b"
    depth: np.ndarray  # [node]
    parents: list[list[int]]  # [node][<=3] parent node indices
    truth: np.ndarray  # [node] true values
    values: np.ndarray  # [state, node] VALUE code at each node's defining position
    states: np.ndarray  # [state, pos, factor] int16, the whole latent state
    rhs_pos: np.ndarray  # [node] defining position of each node
    operand_pos: np.ndarray  # [node, 3] positions of each node's operand occurrences, -1 padded
    pool_names: dict[int, str]  # model pool index -> user name
    vocab: Vocab
    modulus: int
    iterations: int
    converged: bool
    n_layers: int
    n_heads: int
    looped: bool = True
    continuous: bool = False
    operations: tuple[str, ...] = ("+",)
    # attention mass from each node's defining position, per step that read a state of this run
    copy: np.ndarray = field(default=None, repr=False)  # [step, layer, head, node] onto its own operand tokens
    lookup: np.ndarray = field(default=None, repr=False)  # [step, layer, head, node] onto its parents' defining positions
    # the library's routing measures (workbench.analysis.routing, the one definition), per step that read a state
    routing: dict = field(default=None, repr=False)  # measure -> [step, layer, head]
    gather_slot: np.ndarray = field(default=None, repr=False)  # [step, layer, head, slot]

    # ------------------------------------------------------------------ sizes
    @property
    def n_nodes(self) -> int:
        return len(self.names)

    @property
    def n_steps(self) -> int:
        """Steps until the state stopped changing (``workbench solve``'s iterations): states 0..n_steps exist."""
        return self.values.shape[0] - 1

    @property
    def n_read(self) -> int:
        """Steps whose attention was recorded: ``n_steps`` + 1 when a confirming step read the fixed point."""
        return len(self.copy) if self.copy is not None else 0

    def reading_step(self, state: int | None) -> int:
        """The step whose attention to show for ``state``: the step that read it, else the last step run
        (the last state of a run that hit the cap was never read; a one-pass model has step 0 only)."""
        if not self.looped:
            return 0
        return max(0, min(self.clamp(state), self.n_read - 1))

    @property
    def length(self) -> int:
        return self.states.shape[1]

    @property
    def solved(self) -> bool:
        return bool((self.values[-1] == self.truth).all())

    @property
    def unsolved(self) -> int:
        """Nodes without a value (EMPTY or out of range) in the last state: a fixed point can leave some."""
        last = self.values[-1]
        return int(((last < 0) | (last >= self.modulus)).sum())

    @property
    def arithmetic(self) -> str:
        """``"mod 23, operations + -"``: what every value on screen is computed in."""
        return f"mod {self.modulus}, operations {' '.join(self.operations)}"

    def clamp(self, state: int | None) -> int:
        """``state`` limited to 0..n_steps (None: the last state)."""
        return self.n_steps if state is None else max(0, min(int(state), self.n_steps))

    # ------------------------------------------------------------- node status
    def status(self, state: int) -> np.ndarray:
        """[node] NOT_YET / RIGHT / WRONG in ``state``."""
        return status_of(self.values[self.clamp(state)], self.truth, self.vocab)

    def status_matrix(self) -> np.ndarray:
        """[state, node] status of every node in every state."""
        return status_of(self.values, self.truth, self.vocab)

    def accuracy(self) -> np.ndarray:
        """[state] fraction of nodes right."""
        return (self.values == self.truth).mean(1)

    def value_label(self, code: int) -> str:
        return value_label(int(code), self.vocab)

    def events(self) -> list[Event]:
        """Every change of a node's value, in state order."""
        return value_events(self.values, self.truth, self.vocab)

    # --------------------------------------------------------------- tokens
    def token_labels(self, state: int) -> list[str]:
        """[pos] a short label per position of ``state`` with user names (``total=12``, ``+``, ``=``, ``SEP``)."""
        return [self.describe(tok) for tok in self.states[self.clamp(state)].tolist()]

    def describe(self, token) -> str:
        syn, var, op, val = (int(c) for c in token)
        v = self.vocab
        value = "" if val == v.value_na else ("=?" if val == v.empty else f"={val}")
        if syn == VARIABLE:
            return self.pool_names.get(var, f"x_{var}" if var < v.n_names else "x_?") + value
        if syn == OPERATION:
            return ALL_OPERATIONS[op] if op < v.n_ops else "op?"
        if syn == VALUE:
            return str(val) if val < v.n_values else "?"
        return SYNTAX_NAMES[syn] if syn < N_SYNTAX else "?"

    def equation_spans(self) -> list[tuple[int, int]]:
        """[node] the ``(start, stop)`` positions of each node's equation (its SEP included)."""
        starts = [0] + [int(p) + 2 for p in self.rhs_pos[:-1]]
        stops = [int(p) + 2 for p in self.rhs_pos]
        return [(a, min(b, self.length)) for a, b in zip(starts, stops)]

    # ------------------------------------------------------------- codebook
    def code_labels(self, factor: int) -> list[str]:
        """Labels of factor ``factor``'s codes (0 syntax, 1 variable, 2 operation, 3 value)."""
        v = self.vocab
        if factor == 0:
            return list(SYNTAX_NAMES)
        if factor == 1:
            return [self.pool_names.get(i, f"x_{i}") for i in range(v.n_names)] + ["N/A"]
        if factor == 2:
            return list(ALL_OPERATIONS[:v.n_ops]) + ["N/A"]
        return [str(i) for i in range(v.n_values)] + ["N/A", "EMPTY"]

    def code_usage(self, factor: int) -> np.ndarray:
        """[state, code] how many positions hold each code of ``factor``."""
        return code_counts(self.states[..., factor], self.vocab.sizes[factor])

    def entropy(self) -> np.ndarray:
        """[factor, state] entropy (bits) of each factor's code distribution over the positions."""
        return np.stack([entropy_bits(self.code_usage(f)) for f in range(len(FACTORS))])

    def code_changes(self) -> np.ndarray:
        """[factor, step] positions whose code of each factor changed from state t to t + 1."""
        return (self.states[1:] != self.states[:-1]).sum(1).T

    def transitions(self, factor: int, state: int) -> np.ndarray:
        """[code, code] counts of (code in ``state``, code in ``state + 1``) over the positions."""
        n = self.vocab.sizes[factor]
        t = min(self.clamp(state), self.n_steps - 1) if self.n_steps else 0
        src, dst = self.states[t, :, factor].astype(np.int64), self.states[min(t + 1, self.n_steps), :, factor].astype(np.int64)
        return np.bincount(src * n + dst, minlength=n * n).reshape(n, n)

    def value_transitions(self) -> dict[str, np.ndarray]:
        """{kind: [step]} how many nodes each step wrote right, wrong, corrected or broke (``EVENT_KINDS``)."""
        out = {kind: np.zeros(self.n_steps, dtype=np.int64) for kind in EVENT_KINDS}
        for e in self.events():
            out[e.kind][e.state - 1] += 1
        return out

    # ------------------------------------------------------------ attention
    def head_scores(self, state: int | None = None) -> dict[str, np.ndarray]:
        """The routing measures (``workbench.analysis.routing.MEASURES``), each [layer, head], at
        ``reading_step(state)`` (None: the mean over every step). NaN where the step had no such query."""
        from workbench.analysis.routing import MEASURES

        if self.routing is None or not len(self.routing["operand_lookup"]):
            return {m: np.full((self.n_layers, self.n_heads), np.nan) for m in MEASURES}
        if state is None:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return {m: np.nanmean(v, 0) for m, v in self.routing.items()}
        t = min(self.reading_step(state), len(self.routing["operand_lookup"]) - 1)
        return {m: v[t] for m, v in self.routing.items()}

    def head_roles(self) -> list[dict]:
        """Per head: its role (``lookup``, ``gather`` with its slot, ``induction`` or ``other``) overall and
        at every step, and how often it holds: ``workbench.analysis.routing.head_roles`` on this run."""
        from workbench.analysis.routing import head_roles

        if self.routing is None or not len(self.routing["operand_lookup"]):
            return []
        return head_roles(self.routing, self.gather_slot)

    # ---------------------------------------------------------------- example
    @classmethod
    def example(cls) -> "RunView":
        """A hand-made three-node view (for doctests and tests of figure builders)."""
        vocab = Vocab(n_names=8, n_values=23)
        e = vocab.empty
        values = np.array([[e, e, e], [3, e, e], [3, 4, e], [3, 4, 5]])  # the confirming step's copy left out
        states = np.zeros((4, 12, 4), dtype=np.int16)
        return cls(model="example", names=["a", "b", "c"], equations=["a = 3", "b = a", "c = a + b"],
                   depth=np.array([0, 1, 2]), parents=[[], [0], [0, 1]], truth=np.array([3, 4, 7]), values=values,
                   states=states, rhs_pos=np.array([2, 6, 11]), operand_pos=np.array([[-1, -1, -1], [4, -1, -1], [7, 9, -1]]),
                   pool_names={0: "a", 1: "b", 2: "c"}, vocab=vocab, modulus=23, iterations=3, converged=True,
                   n_layers=1, n_heads=2)


# --------------------------------------------------------------------------- pure helpers
def status_of(values: np.ndarray, truth: np.ndarray, vocab: Vocab) -> np.ndarray:
    """NOT_YET where ``values`` is EMPTY, RIGHT where it equals ``truth``, WRONG elsewhere (any shape)."""
    return np.where(values == vocab.empty, NOT_YET, np.where(values == truth, RIGHT, WRONG)).astype(np.int8)


def value_label(code: int, vocab: Vocab) -> str:
    """``"17"``, ``"?"`` (EMPTY: not written yet) or ``"N/A"``."""
    if code == vocab.empty:
        return "?"
    if code == vocab.value_na:
        return "N/A"
    return str(code)


def value_events(values: np.ndarray, truth: np.ndarray, vocab: Vocab) -> list[Event]:
    """Every change of a node's value in ``values`` [state, node], classified by ``EVENT_KINDS``."""
    status = status_of(values, truth, vocab)
    events = []
    for t, n in zip(*np.nonzero(values[1:] != values[:-1])):
        before, after = status[t, n], status[t + 1, n]
        if before == NOT_YET:
            kind = "written right" if after == RIGHT else "written wrong"
        elif before == WRONG:
            kind = "corrected" if after == RIGHT else "rewritten wrong"
        else:
            kind = "broken"
        events.append(Event(int(t) + 1, int(n), kind, int(values[t, n]), int(values[t + 1, n])))
    return sorted(events, key=lambda e: (e.state, e.node))


def code_counts(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """[state, code] counts of each code in ``codes`` [state, pos]."""
    codes = np.asarray(codes, dtype=np.int64)
    offset = np.arange(codes.shape[0])[:, None] * n_codes
    return np.bincount((codes + offset).ravel(), minlength=codes.shape[0] * n_codes).reshape(codes.shape[0], n_codes)


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """[...] entropy in bits of each row of ``counts`` [..., code].

    >>> entropy_bits(np.array([[2, 2, 0], [4, 0, 0]])).tolist()
    [1.0, 0.0]
    """
    p = counts / np.maximum(counts.sum(-1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1)), 0.0)
    return terms.sum(-1) + 0.0


def parent_attention(rows: np.ndarray, rhs_pos: np.ndarray, operand_pos: np.ndarray,
                     parents: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(copy, lookup)`` [head, node]: attention mass from each node's defining position onto its own operand
    tokens, and onto its parents' defining positions.

    rows: [head, node, key] the attention pattern's rows at the nodes' defining positions.

    >>> rows = np.zeros((1, 2, 6)); rows[0, 1, 1] = 0.75; rows[0, 1, 2] = 0.25  # node 1 reads pos 1 (its operand)
    >>> copy, lookup = parent_attention(rows, np.array([2, 5]), np.array([[-1, -1, -1], [1, -1, -1]]), [[], [0]])
    >>> copy.tolist(), lookup.tolist()
    ([[0.0, 0.75]], [[0.0, 0.25]])
    """
    n, keys = rows.shape[1], rows.shape[-1]
    copy_mask = np.zeros((n, keys), dtype=bool)
    look_mask = np.zeros_like(copy_mask)
    for i in range(n):
        ops = operand_pos[i][operand_pos[i] >= 0]
        copy_mask[i, ops] = True
        if parents[i]:
            look_mask[i, rhs_pos[parents[i]]] = True
    return (rows * copy_mask).sum(-1), (rows * look_mask).sum(-1)


__all__ = ["RunView", "Event", "STEPS_SENTENCE", "NOT_YET", "RIGHT", "WRONG", "STATUS_NAMES", "EVENT_KINDS", "status_of", "value_label",
           "value_events", "code_counts", "entropy_bits", "parent_attention"]

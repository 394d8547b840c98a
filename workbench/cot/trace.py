"""The chain-of-thought trace format: a flat word-level token sequence per graph, and its parser.

A sequence is the problem, a separator, then one step per node in model order (the paper's eq-val form):

    <bos> x_5 = 17 ; x_9 = 4 ; x_101 = x_5 + x_9 ; <cot> x_5 = 17 ; x_9 = 4 ; x_101 = x_5 + x_9 = 17 + 4 = 21 ; <eos>

A leaf's step is ``name = value ;``; an inner node's is ``name = operands = operand values = result ;`` (a copy
too: ``x_3 = x_5 = 17 = 17 ;``). Sequences are built without Python loops over graphs or nodes: every node
fills a fixed template of slots (8 for its equation, 16 for its step), and a mask keeps the slots it uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.errors import WorkbenchError
from workbench.task.config import ALL_OPERATIONS, TaskConfig, pool_name
from workbench.task.graphs import Graphs

SPECIALS = ("<pad>", "<bos>", "<eos>", "<cot>", "=", ";")
PAD, BOS, EOS, COT, EQ, END = range(len(SPECIALS))
#: slots of one node's equation (name = a op b op c ;) and of its step (name = a op b op c = va op vb op vc = v ;)
EQUATION_SLOTS, STEP_SLOTS = 8, 16


@dataclass(frozen=True)
class CotVocab:
    """Word-level vocabulary: the specials, the operations, the values 0..p-1, then the pool names.

    >>> vocab = CotVocab.for_task(TaskConfig())
    >>> vocab.size, vocab.decode(vocab.encode("x_3 = 17 ;".split()))
    (160, 'x_3 = 17 ;')
    """

    modulus: int
    n_names: int

    @classmethod
    def for_task(cls, task: TaskConfig) -> "CotVocab":
        return cls(task.modulus, task.n_names)

    @property
    def op_offset(self) -> int:
        return len(SPECIALS)

    @property
    def value_offset(self) -> int:
        return self.op_offset + len(ALL_OPERATIONS)

    @property
    def name_offset(self) -> int:
        return self.value_offset + self.modulus

    @property
    def size(self) -> int:
        return self.name_offset + self.n_names

    @property
    def words(self) -> list[str]:
        return [*SPECIALS, *ALL_OPERATIONS, *map(str, range(self.modulus)), *map(pool_name, range(self.n_names))]

    def encode(self, words: list[str]) -> np.ndarray:
        """Token ids of ``words``; WorkbenchError naming the first word outside the vocabulary."""
        index = {w: i for i, w in enumerate(self.words)}
        bad = next((w for w in words if w not in index), None)
        if bad is not None:
            raise WorkbenchError(f"'{bad}' is not a chain-of-thought word; the words are the specials, "
                                 f"{' '.join(ALL_OPERATIONS)}, values 0..{self.modulus - 1} and names x_0..x_{self.n_names - 1}")
        return np.array([index[w] for w in words], dtype=np.int64)

    def decode(self, tokens) -> str:
        """The words of token ids, space-separated (ids outside the vocabulary show as ``<?>``)."""
        words = self.words
        return " ".join(words[t] if 0 <= t < len(words) else "<?>" for t in np.asarray(tokens).tolist())

    def is_value(self, tokens: np.ndarray) -> np.ndarray:
        return (tokens >= self.value_offset) & (tokens < self.name_offset)

    def is_name(self, tokens: np.ndarray) -> np.ndarray:
        return (tokens >= self.name_offset) & (tokens < self.size)


@dataclass
class Traces:
    """A batch of sequences, right-padded with PAD: tokens [batch, pos], each row's ``length`` and
    ``prompt_length`` (the tokens up to and including ``<cot>``; the trace, EOS included, follows)."""

    tokens: np.ndarray  # [batch, pos] int64
    length: np.ndarray  # [batch]
    prompt_length: np.ndarray  # [batch]

    @property
    def trace_mask(self) -> np.ndarray:
        """[batch, pos]: the positions of the trace (after ``<cot>``, EOS included), where the loss counts."""
        pos = np.arange(self.tokens.shape[1])[None, :]
        return (pos >= self.prompt_length[:, None]) & (pos < self.length[:, None])


def _compact(slots: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``slots`` [batch, slot] with only the ``keep`` slots, left-aligned and PAD-padded; and lengths."""
    length = keep.sum(1)
    out = np.full((slots.shape[0], max(int(length.max(initial=0)), 1)), PAD, dtype=np.int64)
    col = np.cumsum(keep, axis=1) - 1
    rows = np.broadcast_to(np.arange(slots.shape[0])[:, None], slots.shape)
    out[rows[keep], col[keep]] = slots[keep]
    return out, length


def _node_slots(graphs: Graphs, vocab: CotVocab) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every node's equation slots [batch, node, 8] and step slots [batch, node, 16] with their keep masks."""
    if graphs.modulus != vocab.modulus:
        raise WorkbenchError(f"graphs are mod {graphs.modulus} but the vocabulary is mod {vocab.modulus}; use the model's task")
    if int(graphs.names.max(initial=-1)) >= vocab.n_names:
        raise WorkbenchError(f"graphs use name {int(graphs.names.max())} but the pool holds {vocab.n_names} names")
    valid, leaf = graphs.valid, graphs.leaf_value >= 0
    parents = graphs.parents  # [batch, node, 3]
    present = parents >= 0
    safe = np.where(present, parents, 0)
    rows = np.arange(graphs.batch)[:, None, None]
    name = vocab.name_offset + np.maximum(graphs.names, 0)  # [batch, node]
    operand_name = vocab.name_offset + np.maximum(graphs.names[rows, safe], 0)  # [batch, node, 3]
    operand_value = vocab.value_offset + np.maximum(graphs.value[rows, safe], 0)
    op = vocab.op_offset + np.maximum(graphs.ops, 0)  # [batch, node, 2]
    value = vocab.value_offset + np.maximum(graphs.value, 0)
    const = vocab.value_offset + np.maximum(graphs.leaf_value, 0)
    inner = valid & ~leaf

    def expression(operands: np.ndarray) -> np.ndarray:  # [batch, node, 5]: a op b op c
        return np.stack([operands[..., 0], op[..., 0], operands[..., 1], op[..., 1], operands[..., 2]], axis=-1)

    expr_keep = np.stack([present[..., 0], present[..., 1], present[..., 1], present[..., 2], present[..., 2]], axis=-1)
    expr_keep &= inner[..., None]
    eq = np.full(name.shape, EQ)
    end = np.full(name.shape, END)
    first = np.where(leaf, const, operand_name[..., 0])
    equation = np.concatenate([np.stack([name, eq, first], -1), expression(operand_name)[..., 1:], end[..., None]], -1)
    equation_keep = np.concatenate([np.repeat(valid[..., None], 3, -1), expr_keep[..., 1:], valid[..., None]], -1)
    step = np.concatenate([np.stack([name, eq], -1), expression(operand_name), eq[..., None], expression(operand_value),
                           np.stack([eq, value, end], -1)], -1)
    step_keep = np.concatenate([np.repeat(valid[..., None], 2, -1), expr_keep, inner[..., None], expr_keep,
                                np.stack([inner, valid, valid], -1)], -1)
    return equation, equation_keep, step, step_keep


def build_traces(graphs: Graphs, vocab: CotVocab, *, with_trace: bool = True) -> Traces:
    """The sequences of ``graphs``: problem and separator, then (``with_trace``) the solution trace and EOS.

    Without the trace they are the prompts a model continues.

    >>> import numpy as np
    >>> from workbench.task.graphs import sample_graphs
    >>> g = sample_graphs(7, 1, rng=np.random.default_rng(0), fan_in=(1,))
    >>> words = CotVocab.for_task(TaskConfig()).decode(build_traces(g, CotVocab.for_task(TaskConfig())).tokens[0]).split()
    >>> words[0], words.count("<cot>"), words[-1], words[-4:-2] == words[-6:-4]  # a copy's value repeats
    ('<bos>', 1, '<eos>', True)
    """
    equation, equation_keep, step, step_keep = _node_slots(graphs, vocab)
    B = graphs.batch
    column = lambda v: np.full((B, 1), v, dtype=np.int64)  # noqa: E731
    yes = np.ones((B, 1), dtype=bool)
    parts = [column(BOS), equation.reshape(B, -1), column(COT)]
    keeps = [yes, equation_keep.reshape(B, -1), yes]
    if with_trace:
        parts += [step.reshape(B, -1), column(EOS)]
        keeps += [step_keep.reshape(B, -1), yes]
    tokens, length = _compact(np.concatenate(parts, 1), np.concatenate(keeps, 1))
    prompt_length = equation_keep.reshape(B, -1).sum(1) + 2
    return Traces(tokens, length, prompt_length)


def trace_lengths(graphs: Graphs) -> np.ndarray:
    """[batch]: the number of tokens of each graph's correct trace, EOS included (4 per leaf, 4k + 4 per node of k parents)."""
    k = graphs.fan_in
    per_node = np.where(graphs.leaf_value >= 0, 4, 4 * k + 4)
    return np.where(graphs.valid, per_node, 0).sum(1) + 1


@dataclass(frozen=True)
class ParsedTrace:
    """What a generated trace says: ``values`` {pool name index: value} (the last step for a name wins)
    and whether it ``ended`` with EOS. Malformed steps (not ``name = ... value ;``) are skipped."""

    values: dict[int, int]
    ended: bool


def parse_trace(tokens, vocab: CotVocab) -> ParsedTrace:
    """The values a generated trace (the tokens after ``<cot>``) assigns, and whether it reached EOS.

    >>> vocab = CotVocab.for_task(TaskConfig())
    >>> parse_trace(vocab.encode("x_3 = 17 ; x_4 = x_3 = 17 = 17 ; <eos>".split()), vocab)
    ParsedTrace(values={3: 17, 4: 17}, ended=True)
    """
    tokens = np.asarray(tokens).tolist()
    ended = EOS in tokens
    if ended:
        tokens = tokens[: tokens.index(EOS)]
    values: dict[int, int] = {}
    start = 0
    for i, t in enumerate(tokens):
        if t != END:
            continue
        step = tokens[start:i]
        start = i + 1
        if len(step) >= 3 and vocab.name_offset <= step[0] < vocab.size and step[1] == EQ and step[-2] == EQ \
                and vocab.value_offset <= step[-1] < vocab.name_offset:
            values[step[0] - vocab.name_offset] = step[-1] - vocab.value_offset
    return ParsedTrace(values, ended)


__all__ = ["CotVocab", "Traces", "ParsedTrace", "build_traces", "parse_trace", "trace_lengths",
           "PAD", "BOS", "EOS", "COT", "EQ", "END", "SPECIALS"]

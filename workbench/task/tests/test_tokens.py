"""Graphs -> factored token sequences, annotations and teacher states (task-and-model §1.3, §1.4, §3.1)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.task import vocab as V
from workbench.task.config import TaskConfig
from workbench.task.graphs import ADD, MUL, SUB, Graphs, sample_graphs
from workbench.task.tokens import TokenBatch, tokenize

P = 23
VOCAB = V.Vocab(n_names=16, n_values=P)


def _hand_built() -> Graphs:
    """Two graphs in model order; the second has 4 of the 5 node slots.

    graph 0: 7 = x_3, 2 = x_5, 11 = x_0, x_3 + x_5 = x_9 (9), x_9 * x_0 - x_3 = x_1 ((9 * 11 - 7) % 23 = 0)
    graph 1: 4 = x_6, 1 = x_7, x_7 = x_2 (1), x_6 - x_2 = x_8 (3)
    """
    parents = np.array([
        [[-1, -1, -1], [-1, -1, -1], [-1, -1, -1], [0, 1, -1], [3, 2, 0]],
        [[-1, -1, -1], [-1, -1, -1], [1, -1, -1], [0, 2, -1], [-1, -1, -1]],
    ])
    ops = np.array([
        [[-1, -1], [-1, -1], [-1, -1], [ADD, -1], [MUL, SUB]],
        [[-1, -1], [-1, -1], [-1, -1], [SUB, -1], [-1, -1]],
    ])
    leaf_value = np.array([[7, 2, 11, -1, -1], [4, 1, -1, -1, -1]])
    value = np.array([[7, 2, 11, 9, 0], [4, 1, 1, 3, -1]])
    depth = np.array([[0, 0, 0, 1, 2], [0, 0, 1, 2, -1]])
    names = np.array([[3, 5, 0, 9, 1], [6, 7, 2, 8, -1]])
    return Graphs(parents, ops, leaf_value, value, depth, names, np.array([5, 4]), P)


@pytest.fixture(scope="module")
def hand() -> TokenBatch:
    return tokenize(_hand_built(), VOCAB)


@pytest.fixture(scope="module")
def sampled() -> TokenBatch:
    task = TaskConfig(operations=("+", "-", "*"))
    sizes = np.random.default_rng(0).integers(8, 40, 300)
    return tokenize(sample_graphs(sizes, 300, rng=np.random.default_rng(1), task=task, depth_cap=5),
                    V.Vocab.for_task(task))


def _text(state: np.ndarray, length: int | None = None) -> list[str]:
    return [VOCAB.describe(tuple(t)) for t in state[:length]]


def test_hand_worked_sequence(hand):
    assert hand.length.tolist() == [25, 17] and hand.max_len == 25
    assert _text(hand.tokens[0]) == [
        "7", "=", "x_3=?", "SEP", "2", "=", "x_5=?", "SEP", "11", "=", "x_0=?", "SEP",
        "x_3=?", "+", "x_5=?", "=", "x_9=?", "SEP", "x_9=?", "*", "x_0=?", "-", "x_3=?", "=", "x_1=?"]
    assert _text(hand.tokens[1]) == [
        "4", "=", "x_6=?", "SEP", "1", "=", "x_7=?", "SEP", "x_7=?", "=", "x_2=?", "SEP",
        "x_6=?", "-", "x_2=?", "=", "x_8=?"] + ["PAD"] * 8


def test_hand_worked_factor_codes(hand):
    empty, var_na, op_na, value_na = VOCAB.empty, VOCAB.var_na, VOCAB.op_na, VOCAB.value_na
    t = hand.tokens[0]
    assert t[0].tolist() == [V.VALUE, var_na, op_na, 7]  # a leaf's constant
    assert t[1].tolist() == [V.EQUALS, var_na, op_na, value_na]
    assert t[2].tolist() == [V.VARIABLE, 3, op_na, empty]  # its defining variable, EMPTY in the input
    assert t[3].tolist() == [V.SEP, var_na, op_na, value_na]
    assert t[13].tolist() == [V.OPERATION, var_na, ADD, value_na]
    assert t[21].tolist() == [V.OPERATION, var_na, SUB, value_na]
    assert hand.tokens[1, -1].tolist() == list(VOCAB.pad_token())
    assert hand.tokens.dtype == np.int16 and hand.tokens.shape == (2, 25, 4)


def test_hand_worked_annotations(hand):
    assert hand.rhs_pos.tolist() == [[2, 6, 10, 16, 24], [2, 6, 10, 16, -1]]
    assert hand.operand_pos.tolist() == [
        [[-1, -1, -1]] * 3 + [[12, 14, -1], [18, 20, 22]],
        [[-1, -1, -1]] * 2 + [[8, -1, -1], [12, 14, -1], [-1, -1, -1]]]
    node = {2: 0, 6: 1, 10: 2, 12: 0, 14: 1, 16: 3, 18: 3, 20: 2, 22: 0, 24: 4}
    assert hand.node[0].tolist() == [node.get(i, -1) for i in range(25)]
    assert hand.depth[0].tolist() == [{2: 0, 6: 0, 10: 0, 16: 1, 24: 2}.get(i, -1) for i in range(25)]
    assert hand.node[1].tolist() == [{2: 0, 6: 1, 8: 1, 10: 2, 12: 0, 14: 2, 16: 3}.get(i, -1) for i in range(25)]


def test_hand_worked_fan_in_marks_each_rhs_with_its_parent_count(hand):
    assert hand.fan_in[0].tolist() == [{2: 0, 6: 0, 10: 0, 16: 2, 24: 3}.get(i, -1) for i in range(25)]
    assert hand.fan_in[1].tolist() == [{2: 0, 6: 0, 10: 1, 16: 2}.get(i, -1) for i in range(25)]


def test_hand_worked_teacher_states(hand):
    assert _text(hand.state(-1)[0]) == _text(hand.tokens[0])
    rhs = [hand.state(t)[0, [2, 6, 10, 16, 24], V.F_VALUE].tolist() for t in range(3)]
    e = VOCAB.empty
    assert rhs == [[7, 2, 11, e, e], [7, 2, 11, 9, e], [7, 2, 11, 9, 0]]
    solved = _text(hand.solved()[0])
    assert solved[12:17] == ["x_3=?", "+", "x_5=?", "=", "x_9=9"]  # operand occurrences stay EMPTY
    assert solved[-1] == "x_1=0"
    assert _text(hand.solved()[1], 17)[-1] == "x_8=3"


def test_lengths_count_three_per_leaf_two_k_plus_one_per_inner_node_and_separators(sampled):
    g = sampled.graphs
    leaf = g.valid & (g.leaf_value >= 0)
    inner = g.valid & (g.leaf_value < 0)
    expected = 3 * leaf.sum(1) + np.where(inner, 2 * g.fan_in + 1, 0).sum(1) + (g.n_nodes - 1)
    np.testing.assert_array_equal(sampled.length, expected)
    assert sampled.max_len == expected.max()
    pos = np.arange(sampled.max_len)[None, :]
    syntax = sampled.tokens[..., V.F_SYNTAX]
    np.testing.assert_array_equal(syntax == V.PAD, pos >= sampled.length[:, None])
    np.testing.assert_array_equal((syntax == V.SEP).sum(1), g.n_nodes - 1)
    last = np.take_along_axis(syntax, (sampled.length - 1)[:, None], 1)[:, 0]
    assert (last == V.VARIABLE).all() and (syntax[:, 0] == V.VALUE).all()  # no SEP at either end


def test_positions_point_at_their_nodes(sampled):
    g, tb = sampled.graphs, sampled
    rows = np.broadcast_to(np.arange(tb.batch)[:, None], g.valid.shape)[g.valid]
    rhs = tb.rhs_pos[g.valid]
    assert (tb.rhs_pos[~g.valid] == -1).all()
    np.testing.assert_array_equal(tb.tokens[rows, rhs, V.F_VARIABLE], g.names[g.valid])
    np.testing.assert_array_equal(tb.tokens[rows, rhs - 1, V.F_SYNTAX], V.EQUALS)
    np.testing.assert_array_equal(tb.depth[rows, rhs], g.depth[g.valid])
    np.testing.assert_array_equal(tb.node[rows, rhs], np.nonzero(g.valid)[1])
    np.testing.assert_array_equal(tb.target_value[rows, rhs], g.value[g.valid])
    assert tb.is_rhs.sum() == g.valid.sum()

    has = tb.operand_pos >= 0
    np.testing.assert_array_equal(has, (g.parents >= 0) & g.valid[..., None])  # padding nodes write nothing
    op_rows = np.broadcast_to(np.arange(tb.batch)[:, None, None], has.shape)[has]
    pos = tb.operand_pos[has]
    parent = g.parents[has]
    np.testing.assert_array_equal(tb.node[op_rows, pos], parent)
    np.testing.assert_array_equal(tb.tokens[op_rows, pos, V.F_VARIABLE], g.names[op_rows, parent])
    np.testing.assert_array_equal(tb.tokens[op_rows, pos, V.F_VALUE], VOCAB.empty)
    other = (tb.node >= 0).sum() - g.valid.sum()
    assert other == has.sum()  # node is -1 everywhere else


def test_teacher_states_fill_exactly_the_rhs_up_to_each_depth(sampled):
    tb = sampled
    np.testing.assert_array_equal(tb.state(-1), tb.tokens)
    values = tb.teacher_values()
    states = tb.states()
    depth_max = int(tb.max_depth.max())
    assert values.shape == (depth_max + 1,) + tb.depth.shape and values.dtype == np.int16
    for t in range(depth_max + 1):
        state = tb.state(t)
        changed = state[..., V.F_VALUE] != tb.tokens[..., V.F_VALUE]
        np.testing.assert_array_equal(changed, tb.is_rhs & (tb.depth <= t))
        np.testing.assert_array_equal(state[..., :V.F_VALUE], tb.tokens[..., :V.F_VALUE])
        np.testing.assert_array_equal(values[t], state[..., V.F_VALUE])
        np.testing.assert_array_equal(states[t], state)
    np.testing.assert_array_equal(tb.state(depth_max), tb.solved())
    per_graph = tb.state(tb.max_depth)  # one step per graph: its own max depth solves it
    np.testing.assert_array_equal(per_graph, tb.solved())
    solved = tb.solved()
    has = tb.operand_pos >= 0
    rows = np.broadcast_to(np.arange(tb.batch)[:, None, None], has.shape)[has]
    assert (solved[rows, tb.operand_pos[has], V.F_VALUE] == VOCAB.empty).all()  # operands stay EMPTY


def test_select_trims_to_the_longest_selected_sequence(sampled):
    rows = np.argsort(sampled.length)[:10]
    sub = sampled.select(rows)
    assert sub.max_len == sampled.length[rows].max() < sampled.max_len
    keep = sub.max_len
    for field in ("tokens", "target_value", "depth", "node"):
        np.testing.assert_array_equal(getattr(sub, field), getattr(sampled, field)[rows, :keep])
    np.testing.assert_array_equal(sub.rhs_pos, sampled.rhs_pos[rows])
    np.testing.assert_array_equal(sub.graphs.names, sampled.graphs.names[rows])
    np.testing.assert_array_equal(sub.teacher_values(), sampled.select(rows).teacher_values())
    mask = np.zeros(sampled.batch, dtype=bool)
    mask[rows] = True
    assert sampled.select(mask).batch == 10


def test_pad_to_pads_with_pad_tokens_and_rejects_short_targets():
    g = _hand_built()
    tb = tokenize(g, VOCAB, pad_to=40)
    assert tb.tokens.shape == (2, 40, 4)
    assert (tb.tokens[:, 25:] == np.array(VOCAB.pad_token())).all()
    np.testing.assert_array_equal(tb.tokens[:, :25], tokenize(g, VOCAB).tokens)
    with pytest.raises(ValueError, match="pad_to"):
        tokenize(g, VOCAB, pad_to=20)


def test_output_dtypes():
    tb = tokenize(_hand_built(), VOCAB)
    assert tb.tokens.dtype == np.int16 and tb.target_value.dtype == np.int16 and tb.depth.dtype == np.int16
    assert tb.node.dtype == np.int32 and tb.rhs_pos.dtype == np.int32 and tb.operand_pos.dtype == np.int32
    assert tb.tokens.flags.c_contiguous and tb.node.flags.c_contiguous


def test_teacher_values_of_chains_deeper_than_an_int8():
    task = TaskConfig(n_names=256)
    tb = tokenize(sample_graphs(200, 3, rng=np.random.default_rng(0), task=task, recent=1), V.Vocab.for_task(task))
    assert int(tb.max_depth.max()) == 194
    values = tb.teacher_values()
    for t in (0, 1, 127, 128, 193, 194):
        np.testing.assert_array_equal(values[t], tb.state(t)[..., V.F_VALUE])

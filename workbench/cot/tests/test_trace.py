"""The trace format: sequences from graphs, the vocabulary, and parsing a trace back into values."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.cot.trace import BOS, COT, EOS, PAD, CotVocab, build_traces, parse_trace, trace_lengths
from workbench.errors import WorkbenchError
from workbench.task.config import ALL_OPERATIONS, TaskConfig
from workbench.task.graphs import sample_graphs

TASK = TaskConfig(operations=ALL_OPERATIONS)


def graphs(sizes=(7, 12, 20, 33), seed=0, task=TASK):
    return sample_graphs(np.array(sizes), len(sizes), rng=np.random.default_rng(seed), task=task)


def test_parsing_each_generated_trace_gives_every_true_value():
    g = graphs(seed=3)
    vocab = CotVocab.for_task(TASK)
    traces = build_traces(g, vocab)
    for b in range(g.batch):
        parsed = parse_trace(traces.tokens[b, traces.prompt_length[b]:traces.length[b]], vocab)
        n = int(g.n_nodes[b])
        assert parsed.ended
        assert parsed.values == dict(zip(g.names[b, :n].tolist(), g.value[b, :n].tolist()))


def test_sequences_hold_problem_separator_trace_and_eos_in_model_order():
    g = graphs()
    vocab = CotVocab.for_task(TASK)
    traces = build_traces(g, vocab)
    np.testing.assert_array_equal(traces.length - traces.prompt_length, trace_lengths(g))
    for b in range(g.batch):
        row = traces.tokens[b]
        assert row[0] == BOS and row[traces.prompt_length[b] - 1] == COT and row[traces.length[b] - 1] == EOS
        assert (row[traces.length[b]:] == PAD).all() and (row[: traces.length[b]] != PAD).all()
        steps = vocab.decode(row[traces.prompt_length[b]:traces.length[b] - 1]).split(" ;")
        names = [s.split()[0] for s in steps if s.strip()]
        assert names == [f"x_{k}" for k in g.names[b, : g.n_nodes[b]]]


def test_an_inner_step_is_written_in_eq_val_form():
    g = graphs(sizes=(9,), seed=1)
    vocab = CotVocab.for_task(TASK)
    traces = build_traces(g, vocab)
    words = vocab.decode(traces.tokens[0, traces.prompt_length[0]:traces.length[0]]).split(" ; ")
    i = int(np.flatnonzero(g.leaf_value[0] < 0)[0])
    step = words[i].split(" = ")
    parents = g.parents[0, i][g.parents[0, i] >= 0]
    ops = [ALL_OPERATIONS[o] for o in g.ops[0, i] if o >= 0]
    assert step[0] == f"x_{g.names[0, i]}"
    assert step[1].split() == [w for k, p in enumerate(parents) for w in ([ops[k - 1]] if k else []) + [f"x_{g.names[0, p]}"]]
    assert step[2].split() == [w for k, p in enumerate(parents) for w in ([ops[k - 1]] if k else []) + [str(g.value[0, p])]]
    assert step[3] == str(g.value[0, i])


def test_prompts_are_the_sequences_cut_after_the_separator():
    g = graphs()
    vocab = CotVocab.for_task(TASK)
    full, prompts = build_traces(g, vocab), build_traces(g, vocab, with_trace=False)
    np.testing.assert_array_equal(prompts.length, full.prompt_length)
    for b in range(g.batch):
        np.testing.assert_array_equal(prompts.tokens[b, : prompts.length[b]], full.tokens[b, : prompts.length[b]])


def test_trace_mask_covers_exactly_the_trace_and_eos():
    g = graphs()
    traces = build_traces(g, CotVocab.for_task(TASK))
    np.testing.assert_array_equal(traces.trace_mask.sum(1), trace_lengths(g))


def test_vocabulary_round_trips_words_and_refuses_unknown_ones():
    vocab = CotVocab.for_task(TaskConfig(modulus=7, n_names=10))
    assert vocab.size == 6 + 3 + 7 + 10 and len(vocab.words) == vocab.size
    words = "<bos> x_9 = 6 ; <cot> x_9 = 6 ; <eos>".split()
    assert vocab.decode(vocab.encode(words)).split() == words
    with pytest.raises(WorkbenchError, match="'x_10' is not a chain-of-thought word"):
        vocab.encode(["x_10"])
    with pytest.raises(WorkbenchError, match="'7'"):
        vocab.encode(["7"])


def test_graphs_of_another_modulus_are_refused_in_one_line():
    with pytest.raises(WorkbenchError, match="mod 23 but the vocabulary is mod 29") as err:
        build_traces(graphs(), CotVocab(29, 128))
    assert "\n" not in str(err.value)


def test_parsing_skips_malformed_steps_and_notes_a_missing_eos():
    vocab = CotVocab.for_task(TaskConfig())
    parsed = parse_trace(vocab.encode("x_1 = 5 ; = = ; x_2 x_3 ; x_4 = x_1 = 5 = 5 ; x_5 = x_1".split()), vocab)
    assert parsed == parse_trace(vocab.encode("x_1 = 5 ; x_4 = x_1 = 5 = 5 ;".split()), vocab)
    assert parsed.values == {1: 5, 4: 5} and not parsed.ended
    after_eos = parse_trace(vocab.encode("x_1 = 5 ; <eos> x_2 = 3 ;".split()), vocab)
    assert after_eos.values == {1: 5} and after_eos.ended
    assert parse_trace(np.array([], dtype=np.int64), vocab).values == {}

"""Training: a tiny run trains and exports, the loss falls, resume is exact, corruption hits the right slots."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from workbench.errors import WorkbenchError
from workbench.model.checkpoint import CONFIG, WEIGHTS, load_model
from workbench.model.config import ModelConfig
from workbench.model.looped import LoopedModel
from workbench.task.config import TaskConfig
from workbench.task.graphs import sample_graphs
from workbench.task.tokens import tokenize
from workbench.task.vocab import F_VALUE, Vocab
from workbench.training import checkpointing, loop, objectives
from workbench.training.batches import corrupt, one_step_values, operand_values, tainted_frontier, teacher_forced_batch
from workbench.training.config import Phase, TrainConfig, load_train_config
from workbench.training.loop import train

CPU = torch.device("cpu")
TASK = TaskConfig(modulus=5, n_names=16)
TINY = ModelConfig(n_layers=1, n_heads=2, d_model=16, d_mlp=32, rel_window=8)
PHASES = (Phase(name="copy", steps=3, nodes=(7, 8), fan_in=(1,)),
          Phase(name="add", steps=3, nodes=(7, 9), fan_in=(1, 2), depth_cap=None))


def tiny_config(tmp_path, **changes) -> TrainConfig:
    base = TrainConfig(name="tiny", model=TINY, task=TASK, phases=PHASES, out=str(tmp_path / "runs" / "{name}"),
                       export=str(tmp_path / "models" / "{name}"), batch_graphs=4, warmup_steps=1, log_every=1,
                       checkpoint_every=100, eval_sizes=(8,), threads=1)
    return replace(base, **changes)


def log_lines(cfg: TrainConfig) -> list[dict]:
    return [json.loads(line) for line in (cfg.out_dir / "log.jsonl").read_text().splitlines()]


# --- whole runs --------------------------------------------------------------------------------------

def test_tiny_run_trains_logs_checkpoints_and_exports(tmp_path):
    cfg = tiny_config(tmp_path)
    folder = train(cfg, progress=False, device=CPU)
    assert folder == tmp_path / "models" / "tiny"
    model = load_model(folder, device="cpu")
    assert model.cfg == TINY and model.task == TASK
    training = json.loads((folder / CONFIG).read_text())["training"]
    assert training["steps"] == 6 and training["tokens"] > 0 and training["config"]["name"] == "tiny"
    lines = log_lines(cfg)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert [line["phase"] for line in lines] == ["copy"] * 3 + ["add"] * 3
    assert all(np.isfinite(line["loss"]) for line in lines)
    state = json.loads((cfg.out_dir / "checkpoint" / "state.json").read_text())
    assert state["step"] == 6
    assert {p.name for p in (cfg.out_dir / "checkpoint").iterdir()} == {"model.safetensors", "optimizer.safetensors", "state.json"}


def test_run_without_export_returns_none(tmp_path):
    cfg = tiny_config(tmp_path, export=None, phases=PHASES[:1])
    assert train(cfg, progress=False, device=CPU) is None
    assert not (tmp_path / "models").exists()


def test_evaluations_are_logged_and_kept(tmp_path):
    cfg = tiny_config(tmp_path, eval_every=2, export=None)
    calls = []

    def evaluate(model, c):
        calls.append(model.training)
        return {"score": len(calls)}

    train(cfg, progress=False, device=CPU, evaluate_fn=evaluate)
    evals = [line for line in log_lines(cfg) if line["event"] == "eval"]
    assert [e["step"] for e in evals] == [2, 4, 6] and [e["score"] for e in evals] == [1, 2, 3]


def test_loss_falls_on_a_trivially_learnable_copy_task(tmp_path):
    cfg = tiny_config(tmp_path, phases=(Phase(name="copy", steps=50, nodes=(7, 8), fan_in=(1,)),), lr=1e-2,
                      batch_graphs=8, log_every=10, export=None)
    train(cfg, progress=False, device=CPU)
    losses = [line["loss"] for line in log_lines(cfg)]
    assert len(losses) == 5
    assert losses[-1] < 0.6 * losses[0], losses


def train_until_killed(cfg: TrainConfig, kill_at: int, monkeypatch) -> None:
    """Train ``cfg`` and die just after the checkpoint of step ``kill_at`` is written."""

    class Killed(Exception):
        pass

    save = checkpointing.Run.save

    def save_then_die(run):
        save(run)
        if run.step == kill_at:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(checkpointing.Run, "save", save_then_die)
        with pytest.raises(Killed):
            train(cfg, progress=False, device=CPU)


def test_resuming_from_a_checkpoint_gives_the_same_weights_as_one_run(tmp_path, monkeypatch):
    k = 3
    # dropout draws from torch's RNG and corruption from numpy's: both must be restored on resume
    noisy = replace(TINY, dropout=0.1, corruption_prob=0.5, corruption_strategy="previous")
    straight = tiny_config(tmp_path / "a", model=noisy, checkpoint_every=k)
    resumed = tiny_config(tmp_path / "b", model=noisy, checkpoint_every=k)
    train(straight, progress=False, device=CPU)
    train_until_killed(resumed, k, monkeypatch)
    assert json.loads((resumed.out_dir / "checkpoint" / "state.json").read_text())["step"] == k
    with (resumed.out_dir / "log.jsonl").open("a") as log:  # killed after logging a step past the checkpoint
        log.write(json.dumps({"event": "train", "step": k + 1, "loss": 0.0}) + "\n")
    train(resumed, resume=True, progress=False, device=CPU)
    steps = lambda c: [(e["event"], e["step"]) for e in map(json.loads, (c.out_dir / "log.jsonl").read_text().splitlines())]  # noqa: E731
    assert steps(resumed) == steps(straight)  # the orphan step was dropped, nothing logged twice
    a = load_file(str(straight.export_dir / WEIGHTS))
    b = load_file(str(resumed.export_dir / WEIGHTS))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    opt_a = load_file(str(straight.out_dir / "checkpoint" / "optimizer.safetensors"))
    opt_b = load_file(str(resumed.out_dir / "checkpoint" / "optimizer.safetensors"))
    assert all(torch.equal(opt_a[key], opt_b[key]) for key in opt_a)
    tokens_a = json.loads((straight.export_dir / CONFIG).read_text())["training"]["tokens"]
    tokens_b = json.loads((resumed.export_dir / CONFIG).read_text())["training"]["tokens"]
    assert tokens_a == tokens_b


def test_each_stretch_of_a_resumed_run_records_its_steps_and_machine(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, checkpoint_every=2)
    train_until_killed(cfg, 2, monkeypatch)
    state_path = cfg.out_dir / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    assert [st["steps"] for st in state["stretches"]] == [[0, 2]]
    assert state["stretches"][0]["hardware"] == checkpointing.hardware(CPU) and "cpu" in state["stretches"][0]["hardware"]
    del state["stretches"]  # a checkpoint written before stretches were recorded
    state_path.write_text(json.dumps(state))
    train(cfg, resume=True, progress=False, device=CPU)
    stretches = json.loads((cfg.export_dir / CONFIG).read_text())["training"]["stretches"]
    assert [(st["steps"], st["hardware"] is None) for st in stretches] == [([0, 2], True), ([2, 6], False)]
    assert stretches[1]["wall_time_s"] >= 0
    train(cfg, resume=True, progress=False, device=CPU)  # a finished run adds no empty stretch
    assert json.loads((cfg.export_dir / CONFIG).read_text())["training"]["stretches"] == stretches


def test_resume_without_a_checkpoint_is_a_user_error(tmp_path):
    cfg = tiny_config(tmp_path)
    with pytest.raises(WorkbenchError, match="no checkpoint to resume"):
        train(cfg, resume=True, progress=False, device=CPU)


def test_starting_over_an_existing_checkpoint_without_resume_is_a_user_error(tmp_path):
    cfg = tiny_config(tmp_path, phases=PHASES[:1], export=None)
    train(cfg, progress=False, device=CPU)
    before = (cfg.out_dir / "checkpoint" / "model.safetensors").read_bytes()
    with pytest.raises(WorkbenchError, match="--resume"):
        train(cfg, progress=False, device=CPU)
    assert (cfg.out_dir / "checkpoint" / "model.safetensors").read_bytes() == before


def test_resume_with_another_model_config_is_a_user_error(tmp_path):
    cfg = tiny_config(tmp_path, phases=PHASES[:1], export=None)
    train(cfg, progress=False, device=CPU)
    with pytest.raises(WorkbenchError, match="another model or task config"):
        train(replace(cfg, model=replace(TINY, d_model=32, n_heads=4)), resume=True, progress=False, device=CPU)


def test_resume_of_a_finished_run_only_exports(tmp_path):
    cfg = tiny_config(tmp_path, phases=PHASES[:1])
    train(cfg, progress=False, device=CPU)
    first = (cfg.export_dir / WEIGHTS).read_bytes()
    n_lines = len(log_lines(cfg))
    train(cfg, resume=True, progress=False, device=CPU)
    assert (cfg.export_dir / WEIGHTS).read_bytes() == first and len(log_lines(cfg)) == n_lines


@pytest.mark.parametrize("model", [
    replace(TINY, latent="continuous"),
    replace(TINY, recurrence="feedforward", n_layers=2),
    replace(TINY, latent="continuous", supervision="end_to_end"),
    replace(TINY, recurrence="feedforward", supervision="end_to_end"),
    replace(TINY, corruption_prob=1.0, corruption_strategy="all_filled"),
], ids=["continuous", "feedforward", "continuous-end-to-end", "feedforward-end-to-end", "error-correction"])
def test_every_mechanism_trains_a_few_steps(tmp_path, model):
    cfg = tiny_config(tmp_path, model=model, phases=(Phase(name="a", steps=2, nodes=(7, 9), depth_cap=None),
                                                     Phase(name="b", steps=1, nodes=(7, 8), corruption_prob=0.5),
                                                     Phase(name="c", steps=1, nodes=(7, 9), operand_lookup=1.0)))
    folder = train(cfg, progress=False, device=CPU)
    assert load_model(folder, device="cpu").cfg == model
    lines = log_lines(cfg)
    assert all(np.isfinite(line["loss"]) for line in lines)
    assert [("lookup_loss" in line) for line in lines] == [False, False, False, True]  # only where the phase asks


def test_operand_values_read_each_names_defining_slot():
    tb = sampled_batch(3)
    state = tb.state(1)
    got = operand_values(tb, state)
    for b in range(tb.batch):
        for pos in range(tb.max_len):
            node = tb.node[b, pos]
            want = state[b, tb.rhs_pos[b, node], F_VALUE] if node >= 0 and not tb.is_rhs[b, pos] else -1
            assert got[b, pos] == want


@pytest.mark.parametrize("model", [
    replace(TINY, latent="continuous"),
    replace(TINY, latent="continuous", supervision="end_to_end"),
    replace(TINY, recurrence="feedforward", supervision="end_to_end", n_layers=2),
], ids=["continuous", "continuous-end-to-end", "feedforward"])
def test_unrolled_lookup_targets_only_what_the_supervision_may_know(model, monkeypatch):
    """Stepwise supervision: every step against the teacher state it starts from; end to end: the first
    step only, and only operands whose value the input shows (leaves), never an intermediate value."""
    from workbench.model.looped import LoopedModel

    torch.manual_seed(0)
    net = LoopedModel(model, TASK)
    graphs = sample_graphs(np.full(4, 9), 4, rng=np.random.default_rng(1), task=TASK, fan_in=(1, 2))
    tb = tokenize(graphs, Vocab.for_task(TASK))
    seen: list[torch.Tensor] = []
    real = objectives.operand_lookup_loss
    monkeypatch.setattr(objectives, "operand_lookup_loss", lambda m, resid, target: seen.append(target) or real(m, resid, target))
    cfg = tiny_config(Path("."), model=model)
    loss, metrics = objectives.unrolled_loss(objectives.Unroll(net), net, tb, cfg, CPU, operand_lookup=1.0)
    loss.backward()
    assert np.isfinite(metrics["lookup_loss"])
    if model.supervision == "algorithmic":
        assert len(seen) == min(int(tb.max_depth.max()) + 1, cfg.unroll_cap)
        for t, target in enumerate(seen):
            assert np.array_equal(target.numpy(), operand_values(tb, tb.state(t - 1)))
    else:
        (target,) = seen
        shown = target.numpy()
        leaf_defined = (tb.node >= 0) & ~tb.is_rhs & (tb.graphs.leaf_value[np.arange(4)[:, None], np.maximum(tb.node, 0)] >= 0)
        assert np.array_equal(shown >= 0, leaf_defined) and (shown != tb.vocab.empty).all()


UNROLLED = [replace(TINY, latent="continuous"), replace(TINY, latent="continuous", supervision="end_to_end"),
            replace(TINY, recurrence="feedforward", supervision="end_to_end", n_layers=2)]


@pytest.mark.parametrize("model", UNROLLED, ids=["continuous", "continuous-end-to-end", "feedforward"])
def test_the_unrolled_path_learns_to_write_each_leafs_constant(tmp_path, model):
    """A regression guard for the training path of the ablations (backpropagation through the unrolled
    loop, no auxiliary loss): in 150 steps a tiny model learns to write every leaf's constant at its
    defining position in its final state, from chance (1/5). The one-parent copy, the first lookup by
    name, takes thousands of steps at any size we tried (the discrete model included), so it is measured
    in the zoo's training logs (``fan1_acc``), not here."""
    cfg = tiny_config(tmp_path, model=model, phases=(Phase(name="copy", steps=150, nodes=(7, 8), fan_in=(1,)),),
                      lr=1e-2, batch_graphs=8, log_every=5, export=None)
    torch.manual_seed(0)
    train(cfg, progress=False, device=CPU)
    leaf = [line["leaf_acc"] for line in log_lines(cfg)]
    assert leaf[0] < 0.5 and min(leaf[-3:]) >= 0.9, leaf


def test_unrolled_metrics_score_the_last_step_by_fan_in():
    """Leaves right, one-parent copies half right, the two-parent node wrong: each fan-in gets its own share."""
    fan = torch.tensor([[0, -1, 1, 1, 2, 0]])
    target = torch.zeros(1, 6, 4, dtype=torch.long)
    target[..., F_VALUE] = torch.tensor([[3, 0, 1, 2, 4, 0]])
    guess = torch.tensor([[3, 0, 1, 0, 0, 0]])  # right at positions 0, 2 and 5; position 1 is not a definition
    logits = [torch.zeros(1, 6, 5) for _ in range(4)]
    logits[F_VALUE] = torch.nn.functional.one_hot(guess, 5).float()
    metrics = objectives.final_value_metrics(logits, target, fan >= 0, fan)
    assert metrics["frontier_acc"] == pytest.approx(3 / 5)
    assert (metrics["leaf_acc"], metrics["fan1_acc"], metrics["fan2_acc"]) == (1.0, 0.5, 0.0) and "fan3_acc" not in metrics


def test_training_changes_the_weights(tmp_path):
    cfg = tiny_config(tmp_path, phases=PHASES[:1], export=None)
    torch.manual_seed(cfg.seed)
    from workbench.model.looped import LoopedModel

    initial = LoopedModel(cfg.model, cfg.task).state_dict()
    train(cfg, progress=False, device=CPU)
    trained = load_file(str(cfg.out_dir / "checkpoint" / "model.safetensors"))
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)


# --- corruption --------------------------------------------------------------------------------------

def sampled_batch(seed: int = 0, batch: int = 16):
    task = TaskConfig(modulus=5, n_names=24)
    graphs = sample_graphs(np.full(batch, 16), batch, rng=np.random.default_rng(seed), task=task, fan_in=(1, 2, 3))
    return tokenize(graphs, Vocab.for_task(task))


def candidates(depth: np.ndarray, step: np.ndarray, strategy: str) -> np.ndarray:
    t = step[:, None]
    return {"frontier": depth == t, "previous": depth == t - 1, "all_filled": (depth >= 0) & (depth < t)}[strategy]


@pytest.mark.parametrize("strategy", ["frontier", "previous", "all_filled"])
def test_corruption_touches_only_the_value_of_its_strategys_slots(strategy):
    tb = sampled_batch()
    rng = np.random.default_rng(1)
    step = rng.integers(0, tb.max_depth.astype(np.int64) + 2)
    inputs = tb.state(step - 1)
    clean = inputs.copy()
    cfg = ModelConfig(corruption_strategy=strategy, corruption_fraction=1.0)
    out, hit = corrupt(inputs, tb, step, cfg=cfg, prob=1.0, modulus=5, rng=rng)
    expected = candidates(tb.depth.astype(np.int64), step, strategy)
    assert expected.any()
    np.testing.assert_array_equal(hit, expected)  # fraction 1, prob 1: every candidate is hit
    np.testing.assert_array_equal(inputs, clean)  # the input is not modified in place
    changed = (out != inputs).any(-1)
    assert changed.any() and not (changed & ~expected).any()
    np.testing.assert_array_equal(np.delete(out, F_VALUE, axis=-1), np.delete(inputs, F_VALUE, axis=-1))
    assert out[..., F_VALUE][hit].max() < 5 and out[..., F_VALUE][hit].min() >= 0


@pytest.mark.parametrize("strategy", ["frontier", "previous", "all_filled"])
def test_partial_corruption_hits_a_subset_of_the_candidates(strategy):
    tb = sampled_batch(seed=2, batch=32)
    rng = np.random.default_rng(3)
    step = rng.integers(1, tb.max_depth.astype(np.int64) + 2)
    cfg = ModelConfig(corruption_strategy=strategy, corruption_fraction=0.5)
    _, hit = corrupt(tb.state(step - 1), tb, step, cfg=cfg, prob=1.0, modulus=5, rng=rng)
    expected = candidates(tb.depth.astype(np.int64), step, strategy)
    assert hit.any() and not (hit & ~expected).any() and (expected & ~hit).any()


def test_no_corruption_when_the_probability_is_zero():
    tb = sampled_batch()
    step = np.full(tb.batch, 2)
    inputs = tb.state(step - 1)
    out, hit = corrupt(inputs, tb, step, cfg=ModelConfig(corruption_fraction=1.0), prob=0.0, modulus=5,
                       rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, inputs)
    assert not hit.any()


def slow_tainted(tb, hit: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Frontier RHS positions with a corrupted operand, by plain loops over graphs and nodes."""
    out = np.zeros(hit.shape, dtype=bool)
    for b in range(tb.batch):
        for node in range(int(tb.graphs.n_nodes[b])):
            if tb.graphs.depth[b, node] != step[b]:
                continue
            parents = [p for p in tb.graphs.parents[b, node] if p >= 0]
            if any(hit[b, tb.rhs_pos[b, p]] for p in parents):
                out[b, tb.rhs_pos[b, node]] = True
    return out


def corrupted_and_replayed(tb, cfg: ModelConfig, seed: int):
    """A corrupted teacher-forced batch (two steps a graph, p = 5), and its draws replayed from the same
    seed: ``(batch, rows, step per row, corrupted inputs, hit mask)``."""
    batch = teacher_forced_batch(tb, steps_per_graph=2, cfg=cfg, corruption_prob=1.0, modulus=5,
                                 rng=np.random.default_rng(seed), device=CPU)
    rng = np.random.default_rng(seed)
    sub = tb.select(np.repeat(np.arange(tb.batch), 2))
    step = rng.integers(0, sub.max_depth.astype(np.int64) + 2)
    inputs, hit = corrupt(sub.state(step - 1), sub, step, cfg=cfg, prob=1.0, modulus=5, rng=rng)
    return batch, sub, step, inputs, hit


@pytest.mark.parametrize("strategy", ["previous", "all_filled", "frontier"])
def test_teacher_forced_targets_stay_clean_and_tainted_frontier_slots_leave_the_loss(strategy):
    tb = sampled_batch(seed=4)
    batch, sub, step, inputs, hit = corrupted_and_replayed(tb, ModelConfig(corruption_strategy=strategy, corruption_fraction=0.5), 7)
    np.testing.assert_array_equal(batch.inputs.numpy(), inputs)
    np.testing.assert_array_equal(batch.targets.numpy(), sub.state(step))  # targets are never corrupted
    tainted = slow_tainted(sub, hit, step)
    np.testing.assert_array_equal(tainted_frontier(sub, hit, step), tainted)
    in_length = np.arange(sub.max_len)[None, :] < sub.length[:, None]
    np.testing.assert_array_equal(batch.valid.numpy(), in_length & ~tainted)
    np.testing.assert_array_equal(batch.frontier.numpy(), sub.depth == step[:, None])
    if strategy == "frontier":
        assert not tainted.any()  # frontier slots are not operands of other frontier slots
    else:
        assert tainted.any() and (batch.frontier & batch.valid).any()
    assert batch.n_tokens == int((in_length & ~tainted).sum())


def slow_one_step(tb, inputs: np.ndarray, modulus: int) -> np.ndarray:
    """The one-step map by plain loops: fill a node iff its operands are filled, from their values as they stand."""
    out = inputs[..., F_VALUE].copy()
    empty = tb.vocab.empty
    for b in range(tb.batch):
        for node in range(int(tb.graphs.n_nodes[b])):
            pos = tb.rhs_pos[b, node]
            if tb.graphs.leaf_value[b, node] >= 0:
                out[b, pos] = tb.graphs.leaf_value[b, node]
                continue
            parents = [p for p in tb.graphs.parents[b, node] if p >= 0]
            values = [int(inputs[b, tb.rhs_pos[b, p], F_VALUE]) for p in parents]
            if empty in values:
                out[b, pos] = empty
                continue
            acc = values[0]
            for k, v in enumerate(values[1:]):
                op = tb.graphs.ops[b, node, k]
                acc = (acc + v, acc - v, acc * v)[op] % modulus
            out[b, pos] = acc
    return out


def test_one_step_map_of_a_clean_teacher_state_is_the_next_teacher_state():
    tb = sampled_batch(seed=6)
    for t in range(int(tb.max_depth.max()) + 2):
        np.testing.assert_array_equal(one_step_values(tb, tb.state(t - 1), 5), tb.state(t)[..., F_VALUE])


def test_one_step_map_matches_a_loop_on_corrupted_states_with_every_operation():
    task = TaskConfig(modulus=7, n_names=24, operations=("+", "-", "*"))
    graphs = sample_graphs(np.full(12, 14), 12, rng=np.random.default_rng(8), task=task, fan_in=(1, 2, 3))
    tb = tokenize(graphs, Vocab.for_task(task))
    rng = np.random.default_rng(9)
    step = rng.integers(0, tb.max_depth.astype(np.int64) + 2)
    cfg = ModelConfig(corruption_strategy="onestep", corruption_fraction=0.5)
    inputs, hit = corrupt(tb.state(step - 1), tb, step, cfg=cfg, prob=1.0, modulus=7, rng=rng)
    assert hit.any() and (inputs[..., F_VALUE] == tb.vocab.empty)[hit].any()  # some slots erased
    assert (graphs.ops[graphs.ops >= 0] != 0).any()  # not only additions
    np.testing.assert_array_equal(one_step_values(tb, inputs, 7), slow_one_step(tb, inputs, 7))


def test_iterating_the_one_step_map_repairs_any_state_within_depth_plus_one_steps():
    tb = sampled_batch(seed=10, batch=24)
    rng = np.random.default_rng(11)
    step = tb.max_depth.astype(np.int64) + 1  # corrupt a solved state anywhere
    cfg = ModelConfig(corruption_strategy="onestep", corruption_fraction=0.6)
    state, hit = corrupt(tb.state(step - 1), tb, step, cfg=cfg, prob=1.0, modulus=5, rng=rng)
    assert (state[..., F_VALUE] != tb.solved()[..., F_VALUE]).any()
    for _ in range(int(tb.max_depth.max()) + 1):
        state = state.copy()
        state[..., F_VALUE] = one_step_values(tb, state, 5)
    np.testing.assert_array_equal(state, tb.solved())


def test_onestep_corruption_trains_toward_the_map_of_the_noisy_input_on_every_slot():
    tb = sampled_batch(seed=12)
    batch, sub, step, inputs, hit = corrupted_and_replayed(tb, ModelConfig(corruption_strategy="onestep", corruption_fraction=0.3), 13)
    depth = sub.depth.astype(np.int64)
    assert hit.any() and not (hit & ~((depth >= 0) & (depth <= step[:, None]))).any()
    np.testing.assert_array_equal(batch.inputs.numpy(), inputs)
    np.testing.assert_array_equal(batch.targets.numpy()[..., F_VALUE], slow_one_step(sub, inputs, 5))
    assert (batch.targets.numpy() != sub.state(step)).any()  # some targets carry the noise forward
    np.testing.assert_array_equal(batch.valid.numpy(), np.arange(sub.max_len)[None, :] < sub.length[:, None])


def test_teacher_forced_pairs_without_corruption_are_consecutive_teacher_states():
    tb = sampled_batch(seed=5)
    batch = teacher_forced_batch(tb, steps_per_graph=3, cfg=ModelConfig(), corruption_prob=0.0, modulus=5,
                                 rng=np.random.default_rng(0), device=CPU)
    rng = np.random.default_rng(0)
    sub = tb.select(np.repeat(np.arange(tb.batch), 3))
    step = rng.integers(0, sub.max_depth.astype(np.int64) + 2)
    np.testing.assert_array_equal(batch.inputs.numpy(), sub.state(step - 1))
    np.testing.assert_array_equal(batch.targets.numpy(), sub.state(step))
    assert batch.inputs.shape[0] == 3 * tb.batch and batch.valid.all(-1).any()
    fan = batch.fan_in.numpy()
    assert set(np.unique(fan)) <= {-1, 0, 1, 2, 3} and ((fan >= 0) == (sub.depth >= 0)).all()


# --- config ------------------------------------------------------------------------------------------

TOML = """
name = "tiny"
batch_graphs = 4
eval_sizes = [8, 12]

[model]
n_layers = 1
n_heads = 2
d_model = 16

[task]
modulus = 5
n_values = 11
n_names = 16

[[phases]]
name = "wide"
steps = 3
nodes = [7, 8]
fan_in = [1]
modulus = 11

[[phases]]
name = "mod5"
steps = 2
"""


def test_toml_and_json_configs_load_to_the_same_config(tmp_path):
    (tmp_path / "run.toml").write_text(TOML)
    import tomllib

    (tmp_path / "run.json").write_text(json.dumps(tomllib.loads(TOML)))
    a, b = load_train_config(tmp_path / "run.toml"), load_train_config(tmp_path / "run.json")
    assert a == b
    assert a.model.d_model == 16 and a.task.value_codes == 11 and a.total_steps == 5
    assert a.phases[0].nodes == (7, 8) and a.phases[1].nodes == (8, 16) and a.eval_sizes == (8, 12)
    assert [a.phase_at(s).name for s in range(6)] == ["wide"] * 3 + ["mod5"] * 3
    assert TrainConfig.from_dict(json.loads(json.dumps(a.to_dict()))) == a


SHIPPED = sorted(p for p in (Path(loop.__file__).resolve().parents[2] / "models").glob("*/train.toml")
                 if 'kind = "chain-of-thought"' not in p.read_text())  # its own loader: workbench/cot/tests/test_train.py


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_every_shipped_config_loads_and_names_its_folder(path):
    cfg = load_train_config(path)
    assert cfg.name == path.parent.name and cfg.total_steps == sum(p.steps for p in cfg.phases) > 0


#: the other recipes kept beside the models (fine-tunes, later attempts): each must still load and name a
#: starting model that is there, so that the card's "reproduce with" line stays true
OTHER_RECIPES = sorted(p for p in SHIPPED[0].parents[1].glob("*/*.toml")
                       if p.name != "train.toml" and 'kind = "chain-of-thought"' not in (p.parent / "train.toml").read_text())


@pytest.mark.parametrize("path", OTHER_RECIPES, ids=[f"{p.parent.name}/{p.name}" for p in OTHER_RECIPES])
def test_every_other_shipped_recipe_loads_and_its_starting_model_is_there(path):
    cfg = load_train_config(path)
    assert cfg.total_steps == sum(p.steps for p in cfg.phases) > 0
    if cfg.init is not None:
        assert (path.parents[2] / cfg.init / CONFIG).is_file(), cfg.init


def test_the_ablations_share_the_default_recipe_and_change_only_their_mechanism():
    root = SHIPPED[0].parents[1]
    default = load_train_config(root / "default" / "train.toml")
    changed = {"no-error-correction": {"corruption_prob": 0.0}, "continuous-latent": {"latent": "continuous", "corruption_prob": 0.0},
               "end-to-end": {"latent": "continuous", "supervision": "end_to_end", "corruption_prob": 0.0},
               "feedforward": {"recurrence": "feedforward", "n_layers": 8, "d_model": 64, "supervision": "end_to_end",
                               "corruption_prob": 0.0}}
    for name, diff in changed.items():
        cfg = load_train_config(root / name / "train.toml")
        assert cfg.phases == default.phases and cfg.total_steps == default.total_steps and cfg.task == default.task
        assert cfg.lr == default.lr and cfg.batch_graphs == default.batch_graphs and cfg.seed == default.seed
        model = cfg.model.to_dict()
        assert {k: v for k, v in model.items() if v != default.model.to_dict()[k]} == {
            k: v for k, v in diff.items() if default.model.to_dict()[k] != v}


def test_a_derived_config_amends_model_and_task_and_replaces_other_keys(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "run.toml").write_text(TOML)
    (tmp_path / "derived.toml").write_text('base = "base/run.toml"\nname = "derived"\nbatch_graphs = 8\n'
                                           '[model]\nlatent = "continuous"\n[task]\nn_names = 24\n'
                                           '[[phases]]\nname = "only"\nsteps = 7\n')
    base, derived = load_train_config(tmp_path / "base" / "run.toml"), load_train_config(tmp_path / "derived.toml")
    assert derived.name == "derived" and derived.batch_graphs == 8 and derived.eval_sizes == base.eval_sizes
    assert derived.model.latent == "continuous" and derived.model.d_model == base.model.d_model == 16
    assert derived.task.n_names == 24 and derived.task.modulus == base.task.modulus == 5
    assert [p.name for p in derived.phases] == ["only"] and derived.total_steps == 7


@pytest.mark.parametrize("text, fragment", [
    ('base = "missing.toml"\nname = "x"\n', "does not exist"),
    ('base = 3\nname = "x"\n', "'base' must be a path string"),
    ('base = "self.toml"\nname = "x"\n', "is its own base"),
])
def test_a_bad_base_is_a_one_line_user_error(tmp_path, text, fragment):
    (tmp_path / "self.toml").write_text(text)
    with pytest.raises(WorkbenchError, match=fragment) as err:
        load_train_config(tmp_path / "self.toml")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: {**d, "learning_rate": 1}, "unknown training config keys"),
    (lambda d: {**d, "phases": []}, "at least one [[phases]]"),
    (lambda d: {k: v for k, v in d.items() if k != "phases"}, "at least one [[phases]]"),
    (lambda d: {**d, "phases": [{**d["phases"][0], "modulus": 12}]}, "task.n_values >= 12"),
    (lambda d: {**d, "phases": [{**d["phases"][0], "colour": 1}]}, "bad training config"),
    (lambda d: {**d, "phases": [{"steps": 3}]}, "bad training config"),
    (lambda d: {**d, "phases": [{**d["phases"][0], "nodes": [3, 8]}]}, "6 < lo <= hi"),
    (lambda d: {**d, "phases": [{**d["phases"][0], "fan_in": [4]}]}, "fan_in entries"),
    (lambda d: {**d, "model": {"d_model": 18, "n_heads": 4}}, "multiple of n_heads"),
    (lambda d: {**d, "task": {"modulus": 1}}, "modulus must be at least 2"),
    (lambda d: {**d, "phases": [{**d["phases"][0], "nodes": [8, 17]}]}, "task.n_names >= 17"),
    (lambda d: {**d, "task": {**d["task"], "max_fan_in": 1}, "phases": [{**d["phases"][0], "fan_in": [1, 2]}]},
     "exceeds task.max_fan_in 1"),
    (lambda d: {**d, "phases": [{**d["phases"][0], "leaf_values": 12}]}, "leaf_values must lie in 1..11"),
    (lambda d: {**d, "eval_sizes": [8, 32]}, "eval_sizes [8, 32]"),
    (lambda d: {**d, "eval_sizes": [4]}, "7..16"),
    (lambda d: {**d, "checkpoint_every": 0, "log_every": 0}, "log_every, checkpoint_every must be at least 1"),
    (lambda d: {**d, "model": {"n_heads": 0}}, "must be positive"),
])
def test_bad_training_config_is_a_one_line_user_error(edit, fragment):
    import tomllib

    with pytest.raises(WorkbenchError) as info:
        TrainConfig.from_dict(edit(tomllib.loads(TOML)))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unreadable_config_files_are_user_errors(tmp_path):
    with pytest.raises(WorkbenchError, match="does not exist"):
        load_train_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("name = \n")
    with pytest.raises(WorkbenchError, match="cannot parse"):
        load_train_config(tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(WorkbenchError, match="cannot parse"):
        load_train_config(tmp_path / "bad.json")


# --- fan-out: hub graphs and the tempered lookup ---------------------------------------------------------

def test_a_hub_phase_trains_on_graphs_whose_hubs_respect_the_reader_cap():
    from workbench.task.families import fan_out
    from workbench.training.batches import sample_phase

    phase = Phase(name="hubs", steps=1, nodes=(24, 32), hubs=1.0, max_fan_out=9)
    plain = Phase(name="plain", steps=1, nodes=(24, 32))
    hubbed = sample_phase(phase, TaskConfig(), 128, np.random.default_rng(0)).graphs
    base = sample_phase(plain, TaskConfig(), 128, np.random.default_rng(0)).graphs
    assert fan_out(hubbed).max(1).mean() > fan_out(base).max(1).mean() + 0.7
    assert (fan_out(hubbed).max(1) == 9).mean() > 2 * (fan_out(base).max(1) >= 9).mean()
    assert fan_out(hubbed).max() <= max(9, fan_out(base).max())
    assert hubbed.max_depth.max() <= 6  # the phase's depth cap holds


def test_the_lookup_temperature_softens_the_first_blocks_content_scores_in_training_only():
    from workbench.model.looped import LoopedModel
    from workbench.training.loop import set_lookup_temperature

    torch.manual_seed(0)
    model = LoopedModel(replace(TINY, n_layers=2), TASK)
    state = torch.from_numpy(tokenize(sample_graphs(9, 3, rng=np.random.default_rng(1), task=TASK), Vocab.for_task(TASK)).tokens).long()
    model.eval()
    before = model.step(state)[0]
    set_lookup_temperature(model, 2.0)
    assert [b.attn.train_temperature for b in model.blocks] == [2.0, 1.0]
    for a, b in zip(model.step(state)[0], before):  # inference ignores it
        torch.testing.assert_close(a, b)
    model.train()  # dropout is 0: training mode differs only by the temperature
    tempered = model.step(state)[0]
    twin = LoopedModel(replace(TINY, n_layers=2), TASK)
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():  # dividing q by 2 is dividing the content scores by 2
        twin.blocks[0].attn.W_Q.div_(2.0)
        twin.blocks[0].attn.b_Q.div_(2.0)
    twin.train()
    for a, b in zip(tempered, twin.step(state)[0]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(tempered[F_VALUE], before[F_VALUE])
    with pytest.raises(WorkbenchError, match="lookup_temperature and lookup_margin must be positive"):
        Phase(name="bad", steps=1, lookup_temperature=0.0)


def test_the_lookup_margin_asks_the_auxiliary_loss_of_a_softer_first_block_and_leaves_the_main_pass_alone():
    from workbench.model.layers import NO_TAP
    from workbench.training.objectives import LOOKUP_SITE, Unroll

    torch.manual_seed(0)
    model = LoopedModel(replace(TINY, n_layers=2, role_embedding=True), TASK)
    with torch.no_grad():
        model.embed_role.weight.normal_()
    state = torch.from_numpy(tokenize(sample_graphs(9, 3, rng=np.random.default_rng(1), task=TASK), Vocab.for_task(TASK)).tokens).long()
    model.train()
    net = Unroll(model)
    plain_logits, (plain_resid,) = net(state, 1, LOOKUP_SITE)
    logits, (soft_resid,) = net(state, 1, LOOKUP_SITE, 3.0)
    for a, b in zip(logits[0], plain_logits[0]):  # the main pass is the plain one
        torch.testing.assert_close(a, b)
    assert model.blocks[0].attn.train_temperature == 1.0  # put back
    torch.testing.assert_close(model.first_block(state, 1.0), plain_resid)  # the same block, the same input
    twin = LoopedModel(replace(TINY, n_layers=2, role_embedding=True), TASK)
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():  # temperature 3 = W_Q and b_Q divided by 3
        twin.blocks[0].attn.W_Q.div_(3.0)
        twin.blocks[0].attn.b_Q.div_(3.0)
    twin.train()
    torch.testing.assert_close(soft_resid, twin.blocks[0](twin.embed_state(state), NO_TAP, "blocks.0."))
    assert not torch.allclose(soft_resid, plain_resid)
    soft_resid.sum().backward()  # the margin pass trains the first block
    assert model.blocks[0].attn.W_Q.grad.abs().sum() > 0
    with pytest.raises(WorkbenchError, match="set operand_lookup or lookup_attention > 0"):
        Phase(name="bad", steps=1, lookup_margin=2.0)
    with pytest.raises(WorkbenchError, match="must be positive"):
        Phase(name="bad", steps=1, operand_lookup=0.5, lookup_margin=0.0)


def test_the_lookup_attention_loss_teaches_the_first_layer_to_attend_from_each_use_to_its_definition():
    """Minimizing the loss alone at a margin's temperature moves the first layer's attention from operand
    occurrences onto their defining slots (from a random start: the best head is asked), and the loss names
    the heads it counted."""
    from workbench.training.batches import operand_definitions
    from workbench.training.objectives import lookup_attention_loss

    torch.manual_seed(0)
    model = LoopedModel(replace(TINY, n_layers=2, role_embedding=True), TASK).train()
    tb = tokenize(sample_graphs(12, 16, rng=np.random.default_rng(3), task=TASK), Vocab.for_task(TASK))
    state = torch.from_numpy(tb.tokens).long()
    where = torch.from_numpy(operand_definitions(tb))
    assert ((where >= 0) == torch.from_numpy((tb.node >= 0) & ~tb.is_rhs)).all()
    rows, pos = (where >= 0).nonzero(as_tuple=True)
    assert (where[rows, pos] < pos).all()  # every definition comes before its use (causal attention can see it)

    def mass() -> float:  # the best head's mean attention on the defining slot, temperature 1
        with torch.no_grad():
            block = model.blocks[0]
            scores = block.attn.scores(block.ln1(model.embed_state(state)))[rows, :, pos, :]
            return float(torch.softmax(scores, -1).gather(-1, where[rows, pos][:, None, None].expand(-1, scores.shape[1], 1)).mean(0).max())

    before = mass()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(60):
        loss, heads = lookup_attention_loss(model, state, where, 2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert heads >= 1 and before < 0.3 and mass() > 0.8, (before, mass())
    assert lookup_attention_loss(model, state, torch.full_like(where, -1), 2.0)[1] == 0
    with pytest.raises(WorkbenchError, match="must not be negative"):
        Phase(name="bad", steps=1, lookup_attention=-1.0)
    Phase(name="ok", steps=1, lookup_attention=0.5, lookup_margin=2.0)  # a margin without the value read-out


def test_a_train_only_phase_moves_the_named_parameters_and_nothing_else(tmp_path):
    first = train(tiny_config(tmp_path, phases=PHASES[:1]), progress=False, device=CPU)
    gains = replace(PHASES[0], name="gains", train_only=("blocks.0.attn.head_gain",), lookup_attention=0.5)
    tuned = train(tiny_config(tmp_path, name="gains", init=str(first), model=replace(TINY, head_gain=True),
                              phases=(gains,)), progress=False, device=CPU)
    before, after = load_file(str(first / WEIGHTS)), load_file(str(tuned / WEIGHTS))
    assert all(torch.equal(before[k], after[k]) for k in before)  # every trained weight kept, bit for bit
    assert not torch.equal(after["blocks.0.attn.head_gain"], torch.ones_like(after["blocks.0.attn.head_gain"]))
    typo = replace(gains, train_only=("blocks.0.attn.head_gainz",))
    with pytest.raises(WorkbenchError, match="names no parameter"):
        train(tiny_config(tmp_path, name="typo", init=str(first), model=replace(TINY, head_gain=True), phases=(typo,)),
              progress=False, device=CPU)


def test_a_head_gain_of_one_computes_what_the_model_without_it_does_and_scales_that_heads_queries():
    torch.manual_seed(0)
    plain = LoopedModel(replace(TINY, n_layers=2), TASK).eval()
    gained = LoopedModel(replace(TINY, n_layers=2, head_gain=True), TASK).eval()
    gained.load_state_dict(plain.state_dict(), strict=False)
    state = torch.from_numpy(tokenize(sample_graphs(9, 3, rng=np.random.default_rng(1), task=TASK), Vocab.for_task(TASK)).tokens).long()
    with torch.no_grad():
        for a, b in zip(plain.step(state)[0], gained.step(state)[0]):
            torch.testing.assert_close(a, b)
        gained.blocks[0].attn.head_gain[1] = 2.0
        plain.blocks[0].attn.W_Q[1] *= 2.0
        plain.blocks[0].attn.b_Q[1] *= 2.0
        for a, b in zip(plain.step(state)[0], gained.step(state)[0]):
            torch.testing.assert_close(a, b)


def test_init_starts_from_a_models_weights_and_adds_the_missing_role_embedding(tmp_path):
    first = train(tiny_config(tmp_path, phases=PHASES[:1]), progress=False, device=CPU)
    shipped = load_model(first, device="cpu")
    cfg = tiny_config(tmp_path, name="tuned", init=str(first), model=replace(TINY, role_embedding=True),
                      phases=(replace(PHASES[0], steps=1),), lr=1e-9, weight_decay=0.0)
    model = LoopedModel(cfg.model, cfg.task)
    assert checkpointing.load_init_weights(model, str(first)) == ["embed_role.weight"]
    assert torch.equal(model.blocks[0].attn.W_Q, shipped.blocks[0].attn.W_Q)
    tuned = load_model(train(cfg, progress=False, device=CPU), device="cpu")
    # one step at a vanishing rate: the weights are the init model's, not a fresh random draw
    assert torch.allclose(tuned.blocks[0].attn.W_Q, shipped.blocks[0].attn.W_Q, atol=1e-6)
    assert tuned.cfg.role_embedding


def test_init_from_a_model_of_another_shape_is_a_user_error(tmp_path):
    first = train(tiny_config(tmp_path, phases=PHASES[:1]), progress=False, device=CPU)
    cfg = tiny_config(tmp_path, name="wide", init=str(first), model=replace(TINY, d_model=32))
    with pytest.raises(WorkbenchError, match="does not fit"):
        train(cfg, progress=False, device=CPU)


# --- damaged checkpoints, stale logs, kills (reliability) ---------------------------------------------

def damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize("file, damage, reason", [
    ("model.safetensors", "truncate", "unreadable"),
    ("model.safetensors", "delete", "missing"),
    ("optimizer.safetensors", "truncate", "unreadable"),
    ("optimizer.safetensors", "delete", "missing"),
    ("state.json", "truncate", "not JSON"),
    ("state.json", "empty-object", "fields missing"),
    ("state.json", "delete", "missing"),
])
def test_a_damaged_checkpoint_names_the_file_and_the_kept_previous_one(tmp_path, monkeypatch, file, damage, reason):
    cfg = tiny_config(tmp_path, checkpoint_every=2)
    train_until_killed(cfg, 4, monkeypatch)
    path = cfg.out_dir / "checkpoint" / file
    {"truncate": damage_truncate, "delete": Path.unlink,
     "empty-object": lambda p: p.write_text("{}")}[damage](path)
    with pytest.raises(WorkbenchError) as caught:
        train(cfg, resume=True, progress=False, device=CPU)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and reason in message
    assert "previous checkpoint (step 2)" in message and "checkpoint.prev" in message
    # the advice works: with the previous checkpoint in place the run resumes and ends like an unbroken one
    import shutil
    shutil.rmtree(cfg.out_dir / "checkpoint")
    shutil.copytree(cfg.out_dir / "checkpoint.prev", cfg.out_dir / "checkpoint")
    train(cfg, resume=True, progress=False, device=CPU)
    straight = tiny_config(tmp_path / "straight", checkpoint_every=2)
    train(straight, progress=False, device=CPU)
    a, b = load_file(str(straight.export_dir / WEIGHTS)), load_file(str(cfg.export_dir / WEIGHTS))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_first_checkpoint_says_to_start_again(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, checkpoint_every=2)
    train_until_killed(cfg, 2, monkeypatch)
    damage_truncate(cfg.out_dir / "checkpoint" / "model.safetensors")
    with pytest.raises(WorkbenchError, match="no earlier checkpoint is kept; remove"):
        train(cfg, resume=True, progress=False, device=CPU)


def test_a_log_cut_in_half_by_a_kill_resumes_cleanly(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, checkpoint_every=3)
    train_until_killed(cfg, 3, monkeypatch)
    with (cfg.out_dir / "log.jsonl").open("a") as log:
        log.write('{"event": "train", "step": 4, "lo')
    train(cfg, resume=True, progress=False, device=CPU)
    assert [line["step"] for line in log_lines(cfg)] == [1, 2, 3, 4, 5, 6]


def test_a_fresh_start_after_a_run_killed_before_its_first_checkpoint_starts_a_new_log(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg.out_dir.mkdir(parents=True)
    (cfg.out_dir / "log.jsonl").write_text(json.dumps({"event": "train", "step": 1, "loss": 9.0}) + "\n")
    train(cfg, progress=False, device=CPU)
    assert [line["step"] for line in log_lines(cfg)] == [1, 2, 3, 4, 5, 6]
    assert json.loads((cfg.out_dir / "log.stale.jsonl").read_text())["loss"] == 9.0  # kept, not lost


KILLER = """
import os, sys
from workbench.model import checkpoint
from workbench.training import checkpointing, loop
from workbench.training.config import TrainConfig
kill_at, where = int(sys.argv[2]), sys.argv[3]
real_replace, real_save = os.replace, checkpointing.save_file
def replace(src, dst):  # die between the two renames of the checkpoint swap
    if where == "swap" and str(dst).endswith("checkpoint") and loop_step[0] == kill_at:
        os._exit(9)
    real_replace(src, dst)
def save_file(tensors, path):  # die with the new checkpoint half written
    real_save(tensors, path)
    if where == "write" and path.endswith("optimizer.safetensors") and loop_step[0] == kill_at:
        os._exit(9)
loop_step = [0]
save = checkpointing.Run.save
def tracked(run):
    loop_step[0] = run.step
    save(run)
checkpointing.Run.save = tracked
checkpoint.os.replace = replace
checkpointing.save_file = save_file
import json
cfg = TrainConfig.from_dict(json.loads(open(sys.argv[1]).read()))
loop.train(cfg, progress=False, device=__import__("torch").device("cpu"), resume=len(sys.argv) > 4)
"""


@pytest.mark.parametrize("where", ["write", "swap"])
def test_a_process_killed_inside_a_checkpoint_write_resumes_to_identical_weights(tmp_path, where):
    import subprocess
    import sys

    cfg = tiny_config(tmp_path / "killed", checkpoint_every=2)
    straight = tiny_config(tmp_path / "straight", checkpoint_every=2)
    config_file = tmp_path / "cfg.json"
    config_file.write_text(json.dumps(cfg.to_dict()))
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    died = subprocess.run([sys.executable, str(script), str(config_file), "4", where], capture_output=True, text=True)
    assert died.returncode == 9, died.stderr  # really killed, mid-write
    assert not (cfg.export_dir / WEIGHTS).exists()
    resumed = subprocess.run([sys.executable, str(script), str(config_file), "-1", where, "resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    train(straight, progress=False, device=CPU)
    a, b = load_file(str(straight.export_dir / WEIGHTS)), load_file(str(cfg.export_dir / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [line["step"] for line in log_lines(cfg)] == [1, 2, 3, 4, 5, 6]


def test_a_task_with_fan_in_two_trains_evaluates_and_samples_only_what_it_allows(tmp_path):
    from workbench.evaluation import evaluate_sizes
    from workbench.task.graphs import sample_graphs

    task = replace(TASK, max_fan_in=2)
    graphs = sample_graphs(12, 16, rng=np.random.default_rng(0), task=task)
    assert graphs.fan_in.max() == 2
    cfg = tiny_config(tmp_path, task=task, phases=(Phase(name="add", steps=2, nodes=(7, 9), fan_in=(1, 2)),),
                      eval_every=1)
    evaluate = lambda model, c: {"sizes": [r.to_dict() for r in evaluate_sizes(model, [8], 4, progress=False)]}  # noqa: E731
    train(cfg, progress=False, device=CPU, evaluate_fn=evaluate)
    assert [e["step"] for e in json.loads((cfg.out_dir / "checkpoint" / "state.json").read_text())["evals"]][:1] == [1]

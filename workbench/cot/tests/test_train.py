"""Training the chain-of-thought model: configs, the loss, resumable runs, export, and that it learns."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.cot.model import CotConfig, CotModel, load_cot
from workbench.cot.train import (CotPhase, CotTrainConfig, is_cot_config, load_cot_config, sample_batch, trace_loss,
                                 train)
from workbench.cot.trace import CotVocab, build_traces, trace_lengths
from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig
from workbench.task.graphs import sample_graphs

MODELS = Path(__file__).resolve().parents[3] / "models"
CPU = torch.device("cpu")


def tiny_config(tmp_path: Path, steps: int = 4, **kw) -> CotTrainConfig:
    settings = dict(name="cot-test", model=CotConfig(n_layers=1, n_heads=2, d_model=16, n_ctx=256),
                    phases=(CotPhase(name="a", steps=steps, nodes=(7, 10)),), out=str(tmp_path / "run"),
                    export=str(tmp_path / "model"), batch_graphs=4, log_every=2, eval_every=2, eval_sizes=(8,),
                    eval_count=2, checkpoint_every=2, threads=1)
    return CotTrainConfig(**{**settings, **kw})


def test_the_shipped_config_is_the_papers_size_and_the_smoke_config_derives_from_it():
    cfg = load_cot_config(MODELS / "chain-of-thought" / "train.toml")
    assert (cfg.model.n_layers, cfg.model.n_heads, cfg.model.d_model) == (8, 16, 512)
    assert cfg.phases[-1].nodes == (8, 32) and cfg.phases[0].nodes[0] == 8
    smoke = load_cot_config(MODELS / "chain-of-thought" / "smoke.toml")
    assert smoke.model.d_model == 64 and smoke.model.positions == cfg.model.positions and smoke.task == cfg.task
    assert smoke.total_steps <= 100 and "runs/" in smoke.out
    assert is_cot_config(MODELS / "chain-of-thought" / "train.toml")
    assert not is_cot_config(MODELS / "default" / "train.toml")


def test_bad_configs_are_one_line_errors(tmp_path):
    with pytest.raises(WorkbenchError, match="unknown chain-of-thought training config keys"):
        CotTrainConfig.from_dict({"name": "x", "phases": [{"name": "a", "steps": 1}], "epochs": 3})
    with pytest.raises(WorkbenchError, match="kind"):
        replace(tiny_config(tmp_path), kind="looped")
    with pytest.raises(WorkbenchError, match="nodes a range"):
        CotPhase(name="a", steps=1, nodes=(5, 8))
    with pytest.raises(WorkbenchError, match="at least one"):
        CotTrainConfig(name="x")


def test_the_loss_counts_the_trace_words_only():
    task = TaskConfig()
    g = sample_graphs(np.array([8, 12, 9]), 3, rng=np.random.default_rng(0), task=task)
    traces = build_traces(g, CotVocab.for_task(task))
    model = CotModel(CotConfig(n_layers=1, n_heads=2, d_model=16, n_ctx=256), task)
    loss, metrics, n_tokens = trace_loss(model, traces, CPU)
    assert n_tokens == trace_lengths(g).sum()
    assert loss.item() == pytest.approx(np.log(model.vocab.size), rel=0.2)
    assert set(metrics) == {"token_acc", "value_acc", "trace_acc"}


def test_a_run_logs_checkpoints_resumes_and_exports(tmp_path):
    cfg = tiny_config(tmp_path)
    folder = train(cfg, progress=False, device=CPU)
    assert (folder / "config.json").exists() and (folder / "training.png").exists()
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["train", "eval", "train", "eval"]
    assert {"loss", "token_acc", "phase", "tokens", "lr"} <= events[0].keys()
    assert events[1]["sizes"][0]["n_nodes"] == 8 and "graph_acc" in events[1]["sizes"][0]
    with pytest.raises(WorkbenchError, match="already holds a checkpoint"):
        train(cfg, progress=False, device=CPU)
    longer = replace(cfg, phases=(CotPhase(name="a", steps=6, nodes=(7, 10)),))
    folder = train(longer, resume=True, progress=False, device=CPU)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["kind"] == "chain-of-thought" and meta["training"]["steps"] == 6 and meta["training"]["finished"]
    steps = [e["step"] for e in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines()) if e["event"] == "train"]
    assert steps == [2, 4, 6]
    assert load_cot(folder, device="cpu").meta["training"]["steps"] == 6
    other = replace(longer, model=replace(longer.model, d_model=32))
    with pytest.raises(WorkbenchError, match="another model or task config"):
        train(other, resume=True, progress=False, device=CPU)


def test_resuming_gives_the_same_weights_as_training_straight_through(tmp_path):
    straight = train(tiny_config(tmp_path / "a", steps=4, export=None), progress=False, device=CPU)
    assert straight is None
    two = tiny_config(tmp_path / "b", steps=2, export=None)
    train(two, progress=False, device=CPU)
    train(replace(two, phases=(CotPhase(name="a", steps=4, nodes=(7, 10)),)), resume=True, progress=False, device=CPU)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "run" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "checkpoint" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_a_tiny_model_learns_copy_traces_within_a_few_hundred_steps():
    """The training path can learn: on copy-only graphs of 7-8 nodes, next-word accuracy on held-out traces
    rises from chance to most words, and result values (mostly leaf constants looked up by name) pass chance."""
    torch.manual_seed(0)
    task = TaskConfig()
    model = CotModel(CotConfig(n_layers=2, n_heads=4, d_model=64, n_ctx=256), task)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    phase = CotPhase(name="copy", steps=1, nodes=(7, 8), fan_in=(1,), depth_cap=None)
    rng = np.random.default_rng(0)
    held_out = sample_batch(phase, task, 64, np.random.default_rng(99))
    with torch.no_grad():
        before = trace_loss(model.eval(), held_out, CPU)
    model.train()
    for _ in range(300):
        loss, _, _ = trace_loss(model, sample_batch(phase, task, 16, rng), CPU)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        after = trace_loss(model.eval(), held_out, CPU)
    assert before[1]["token_acc"] < 0.05 and after[1]["token_acc"] > 0.65
    assert after[0].item() < 0.3 * before[0].item()
    assert after[1]["value_acc"] > 0.3  # chance is 1/23

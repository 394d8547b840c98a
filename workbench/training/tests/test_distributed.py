"""Data-parallel training under torchrun: two CPU processes (gloo) keep identical replicas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONFIG = """
name = "ddp"
out = "{root}/run"
export = "{root}/model"
batch_graphs = 4
log_every = 2
checkpoint_every = 3
eval_every = 1000
eval_sizes = [8]
eval_count = 4
threads = 1
model = {{ n_layers = 1, d_model = 16, n_heads = 2, dropout = 0.1, corruption_prob = 0.5 }}
phases = [{{ name = "a", steps = 4, nodes = [8, 10] }}]
"""


def test_two_cpu_processes_keep_identical_replicas(tmp_path: Path) -> None:
    config = tmp_path / "ddp.toml"
    config.write_text(CONFIG.format(root=tmp_path.as_posix()))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "workbench.cli", "train", "--config", str(config)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    # the launcher's own report ends stderr; the workers' first complaints come earlier (kept for a failure)
    first = [line for line in done.stderr.splitlines() if "torch/distributed/elastic" not in line][:40]
    assert done.returncode == 0, "\n".join(first) + "\n...\n" + done.stderr[-1500:]
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    replicas = [e for e in events if e["event"] == "replicas"]
    assert replicas == [{"event": "replicas", "step": 4, "world_size": 2, "identical": True}]
    steps = [e["step"] for e in events if e["event"] == "train"]
    assert steps == [2, 4]  # only rank 0 logs
    assert (tmp_path / "model" / "model.safetensors").is_file()

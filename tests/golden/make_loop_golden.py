"""Pin what the loop computes on the shipped checkpoints, so a rewrite of the loop can prove it changed nothing.

Run once with the code whose outputs are the reference; ``tests/test_loop_equivalence.py`` compares the
current code against the file it writes. Regenerate only on purpose (a deliberate change of outputs):

    .venv/bin/python tests/golden/make_loop_golden.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from workbench.hooks.tl_wrapper import hooked
from workbench.model.checkpoint import load_model
from workbench.task.graphs import sample_graphs
from workbench.task.tokens import tokenize
from workbench.task.vocab import F_VALUE

GOLDEN = Path(__file__).with_name("loop_golden.safetensors")
SHIPPED = Path(__file__).resolve().parents[2] / "models"  # by path: a test may point WORKBENCH_MODELS elsewhere
MODELS = ("default", "continuous-latent", "end-to-end", "feedforward", "no-error-correction")
SIZES = np.array([12, 16, 20, 9])  # one batch of mixed lengths: padding and early finishers both exercised
UNROLL_STEPS = 3
SEED = 7


def golden_batch(model):
    """The pinned input: four graphs of the paper's law, right-padded."""
    graphs = sample_graphs(SIZES, len(SIZES), rng=np.random.default_rng(SEED), task=model.task)
    tb = tokenize(graphs, model.vocab)
    return torch.from_numpy(tb.tokens).long(), torch.from_numpy(tb.length).long()


def unrolled_logits(model, tokens: torch.Tensor, n_steps: int) -> list[list[torch.Tensor]]:
    """Per-step logits of training's with-gradient path (imported lazily: its home may move)."""
    try:
        from workbench.training.objectives import Unroll
    except ImportError:  # where it lived before the loop was unified
        from workbench.training.loop import Unroll
    return Unroll(model)(tokens, n_steps)


def outputs(name: str) -> dict[str, torch.Tensor]:
    """Everything the three drivers return on the pinned batch, as named tensors."""
    torch.manual_seed(0)
    model = load_model(SHIPPED / name, device="cpu").eval()
    tokens, lengths = golden_batch(model)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        run = model.run(tokens, lengths=lengths, record=True)
        out["run.states"] = run.states.to(torch.int16)
        out["run.iterations"], out["run.converged"] = run.iterations, run.converged.to(torch.int8)
        hm = hooked(model)
        ho = hm(tokens, lengths=lengths, return_type="output")
        out["hooked.states"] = ho.states.cpu().to(torch.int16)
        out["hooked.iterations"], out["hooked.converged"] = ho.iterations.cpu(), ho.converged.cpu().to(torch.int8)
        out["hooked.logits.value"] = ho.logits[F_VALUE].cpu().float()
        fixed = hm(tokens, lengths=lengths, n_steps=2, return_type="output")
        out["hooked2.states"] = fixed.states.cpu().to(torch.int16)
    per_step = unrolled_logits(model, tokens, UNROLL_STEPS if model.cfg.looped else 1)  # training's step counts
    padding = torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]  # [batch, pos]: never scored, never read
    for t, logits in enumerate(per_step):  # the value factor: the one the loss weighs most
        out[f"unroll.{t}.value"] = logits[F_VALUE].detach().float().masked_fill(padding[..., None], 0.0)
    return {f"{name}/{k}": v.contiguous() for k, v in out.items()}


def main() -> None:
    torch.set_num_threads(1)
    tensors: dict[str, torch.Tensor] = {}
    for name in MODELS:
        tensors.update(outputs(name))
    save_file(tensors, GOLDEN)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1e6:.2f} MB, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()

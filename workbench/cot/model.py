"""The chain-of-thought baseline: a decoder-only causal language model over ``workbench.cot.trace`` words.

``model.net`` (``workbench.cot.net``) is plain PyTorch laid out as TransformerLens's native transformer, so training
and generation need no TransformerLens; ``model.tl`` is TransformerLens's own model (``TransformerBridge.boot_native``:
TransformerLens 4 replaced ``HookedTransformer``/``HookedTransformerConfig`` with it) over the same parameters, so
``model.tl.run_with_cache(tokens)`` gives TransformerLens's hook names (``blocks.0.attn.hook_pattern``, ...) and
``nnsight.NNsight(model.tl)`` traces it. Positions: ``rotary`` (RoPE, as the reference code) or ``none`` (NoPE, as
the paper: TransformerLens's native model has no NoPE option, so it is a position table held at zero and frozen).
Model folders: ``model.safetensors`` + ``config.json`` with ``"kind": "chain-of-thought"``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.cot.trace import CotVocab
from workbench.errors import WorkbenchError
from workbench.task.config import TaskConfig

KIND = "chain-of-thought"
FORMAT = "workbench-model/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"
POSITIONS = ("rotary", "none")


@dataclass(frozen=True, kw_only=True)
class CotConfig:
    """Architecture of the chain-of-thought model (the paper's: 8 layers x 16 heads x 512, MLP 4D, ReLU, pre-LN).

    n_ctx: the longest sequence, problem and trace together (about 6N + 12N words: 520 at N = 32, 2,100 at N = 128).
    """

    n_layers: int = 8
    n_heads: int = 16
    d_model: int = 512
    d_mlp: int | None = None
    n_ctx: int = 4096
    positions: str = "rotary"
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n_layers, self.n_heads, self.d_model, self.n_ctx) < 1:
            raise WorkbenchError("n_layers, n_heads, d_model and n_ctx must be positive")
        if self.d_model % self.n_heads:
            raise WorkbenchError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.positions not in POSITIONS:
            raise WorkbenchError(f"positions must be one of {list(POSITIONS)}, got {self.positions!r}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CotConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise WorkbenchError(f"unknown chain-of-thought model keys {unknown}; known: {sorted(known)}")
        return cls(**d)


class CotModel(nn.Module):
    """A causal LM over trace words; ``forward(tokens [batch, pos]) -> logits [batch, pos, vocab]``.

    ``net`` is the plain PyTorch network (training, generation); ``tl`` is TransformerLens's hookable model
    over the same parameters (built on first use).

    >>> m = CotModel(CotConfig(n_layers=1, n_heads=2, d_model=16, n_ctx=64), TaskConfig())
    >>> m(torch.zeros(2, 5, dtype=torch.long)).shape
    torch.Size([2, 5, 160])
    """

    kind = KIND

    def __init__(self, cfg: CotConfig, task: TaskConfig) -> None:
        super().__init__()
        from workbench.cot.net import CotNet

        self.cfg, self.task, self.vocab = cfg, task, CotVocab.for_task(task)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.net = CotNet(d_vocab=self.vocab.size, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_model=cfg.d_model,
                              d_mlp=cfg.d_mlp or 4 * cfg.d_model, n_ctx=cfg.n_ctx, positions=cfg.positions)
        self.meta: dict[str, Any] = {}
        self.__dict__["_tl"] = None  # not a submodule: its parameters are net's own

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # [batch, pos] -> [batch, pos, vocab]
        if tokens.shape[1] > self.cfg.n_ctx:
            raise WorkbenchError(f"a sequence of {tokens.shape[1]} words exceeds this model's n_ctx {self.cfg.n_ctx}; "
                                 "solve smaller problems or raise n_ctx")
        return self.net(tokens)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def tl(self):
        """TransformerLens's ``TransformerBridge`` over this model's parameters (shared, not copied): hook it with
        ``run_with_cache``/``run_with_hooks``, or trace it with ``nnsight.NNsight(model.tl)``."""
        bridge = self.__dict__["_tl"]
        if bridge is None:
            bridge = self.__dict__["_tl"] = _bridge_over(self)
        if next(bridge.buffers()).device != self.device:  # the parameters are net's; only TL's own buffers may lag
            bridge.to(self.device)
        bridge.train(self.training)
        return bridge

    def weights(self) -> dict[str, torch.Tensor]:
        """The state to save (the names of TransformerLens's native model: ``layers.0.attn.q.weight``, ...)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(weights, strict=True)


def _bridge_over(model: CotModel):
    """Boot TransformerLens's native model of ``model.cfg`` and replace each of its parameters by ``model.net``'s."""
    from transformer_lens import TransformerBridge, TransformerBridgeConfig
    import transformer_lens.model_bridge.sources.native  # noqa: F401  (attaches boot_native)

    cfg = model.cfg
    tl_cfg = TransformerBridgeConfig(
        d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, d_head=cfg.d_head,
        d_mlp=cfg.d_mlp or 4 * cfg.d_model, n_ctx=cfg.n_ctx, d_vocab=model.vocab.size, act_fn="relu",
        normalization_type="LN", attention_dir="causal", init_weights=False,
        positional_embedding_type="rotary" if cfg.positions == "rotary" else "standard")
    bridge = TransformerBridge.boot_native(tl_cfg, device=model.device)
    for path, param in model.net.named_parameters():
        *modules, leaf = path.split(".")
        target = bridge.original_model
        for name in modules:
            target = getattr(target, name)
            target = getattr(target, "_original_component", target)
        assert getattr(target, leaf).shape == param.shape, path
        setattr(target, leaf, param)
    return bridge.train(model.training)


def save_cot(model: CotModel, folder: str | os.PathLike, *, name: str | None = None,
             extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a model folder (safetensors + config.json with ``"kind"``); other files are kept."""
    from safetensors.torch import save_file

    from workbench.model.checkpoint import atomic_path, write_text_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "kind": KIND, "name": name or folder.name, "model": model.cfg.to_dict(),
            "task": model.task.to_dict(), **(extra or {})}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(model.weights(), str(tmp))
    write_text_atomic(folder / CONFIG, json.dumps(meta, indent=2) + "\n")
    return folder


def build_cot(meta: dict[str, Any]) -> CotModel:
    """An untrained model from a config.json dict (``model`` and ``task`` sections)."""
    try:
        return CotModel(CotConfig.from_dict(meta["model"]), TaskConfig.from_dict(meta["task"]))
    except (TypeError, KeyError) as exc:
        raise WorkbenchError(f"incompatible chain-of-thought config: {exc}") from None


def load_cot(folder: str | os.PathLike, meta: dict[str, Any] | None = None, *,
             device: str | torch.device | None = None) -> CotModel:
    """The chain-of-thought model in ``folder`` (eval mode, on ``device``; default cuda when available)."""
    from safetensors.torch import load_file

    from workbench.device import default_device

    folder = Path(folder)
    if meta is None:
        try:
            meta = json.loads((folder / CONFIG).read_text())
        except (OSError, ValueError) as exc:
            raise WorkbenchError(f"cannot read {folder / CONFIG} ({type(exc).__name__}); give a model folder") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise WorkbenchError(f"{folder / CONFIG} is not a chain-of-thought model (no \"kind\": \"{KIND}\")")
    model = build_cot(meta)
    try:
        weights = load_file(str(folder / WEIGHTS))
    except Exception as exc:  # safetensors raises its own types for truncated or foreign files
        raise WorkbenchError(f"corrupt checkpoint {folder / WEIGHTS} ({type(exc).__name__}); restore or retrain it") from None
    try:
        model.load_weights(weights)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "shape mismatch"
        raise WorkbenchError(f"checkpoint {folder / WEIGHTS} does not fit its config.json ({first})") from None
    model.meta = {**meta, "name": meta.get("name", folder.name), "path": str(folder)}
    return model.to(device if device is not None else default_device()).eval()


__all__ = ["CotConfig", "CotModel", "KIND", "save_cot", "load_cot", "build_cot"]

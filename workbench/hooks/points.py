"""Parameter-free hook-point containers of one loop step, and the tap that routes a step's sites to them.

``HookedLooped`` owns one ``StepHooks`` per step (``loop.{t}.…``); the model's components call
``tap(name, x)`` with names relative to one step, and ``StepTap`` sends each to its HookPoint. A
site nobody listens at is skipped entirely, so an unhooked run costs what the plain model costs.
"""

from __future__ import annotations

from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from workbench.model.layers import Tap


class AttnHooks(nn.Module):
    """Hook points of one attention layer at one step."""

    def __init__(self) -> None:
        super().__init__()
        for site in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z", "hook_result"):
            setattr(self, site, HookPoint())


class MLPHooks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()


class BlockHooks(nn.Module):
    """Hook points of one block at one step (registered in forward order)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.attn = AttnHooks()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.mlp = MLPHooks()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()


class StepHooks(nn.Module):
    """Every hook point of one loop step; holds no parameters."""

    def __init__(self, n_layers: int, n_factors: int) -> None:
        super().__init__()
        self.hook_state = HookPoint()
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(BlockHooks() for _ in range(n_layers))
        self.hook_final = HookPoint()
        self.hook_logits = nn.ModuleList(HookPoint() for _ in range(n_factors))
        self.hook_bottleneck = HookPoint()


def listened(hp: nn.Module) -> bool:
    """Whether a hook point has a hook now."""
    return bool(hp._forward_hooks or hp._backward_hooks)


class StepTap(Tap):
    """The model's tap for one step: routes ``tap(name, x)`` to that step's HookPoint.

    ``always`` calls every HookPoint and reports every site active (nnsight intercepts module calls,
    so it must see all of them); otherwise only hooked sites are called and active. ``shared`` hook
    points (nnsight's ``tracer.iter`` view, one module called once per step) are called after the
    step's own.
    """

    def __init__(self, points: dict[str, nn.Module], always: bool = False, shared: dict[str, nn.Module] | None = None) -> None:
        self.points, self.always, self.shared = points, always, shared

    def __call__(self, name: str, x: Tensor) -> Tensor:
        hp = self.points.get(name)
        if hp is not None and (self.always or listened(hp)):
            x = hp(x)
        sp = None if self.shared is None else self.shared.get(name)
        return x if sp is None else sp(x)

    def active(self, name: str) -> bool:
        hp = self.points.get(name)
        return (hp is not None and (self.always or listened(hp))) or (self.shared is not None and name in self.shared)


class BorrowedMode:
    """For a wrapper with no train/eval mode of its own: ``training`` reads the wrapped model's and
    ``train``/``eval`` set it (TransformerLens's tools that refuse a model in training mode then see
    exactly the model's mode). Subclasses say where the model is (``wrapped_model``, None while
    ``nn.Module.__init__`` runs)."""

    def wrapped_model(self) -> nn.Module | None:
        raise NotImplementedError

    @property
    def training(self) -> bool:
        model = self.wrapped_model()
        return model.training if model is not None else self.__dict__.get("_own_training", True)

    @training.setter
    def training(self, mode: bool) -> None:
        self.__dict__["_own_training"] = mode

    def train(self, mode: bool = True):
        """Set the wrapped model's mode (the hook points hold no weights and stay in eval mode)."""
        self.wrapped_model().train(mode)
        return self


__all__ = ["BorrowedMode", "AttnHooks", "MLPHooks", "BlockHooks", "StepHooks", "StepTap", "listened"]

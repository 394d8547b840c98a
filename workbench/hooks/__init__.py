"""Hookable views of a looped model: every loop step addressable in TransformerLens and nnsight.

    hooked(model) / load_hooked("default")   a TransformerLens HookedRootModule (``loop.{t}.…`` hooks)
    hm.at_step(t) / cache.at_step(t)          one step as a HookedTransformer-style model / an ActivationCache
    nnsight_model(model)                      an nnsight model over the same per-step hook points
    trajectory, inject_corruption, patch, ablate_heads   one-call interventions (workbench.hooks.interventions)
    model_lock / guarded                      the one lock every model call from the app goes through

TransformerLens (~3.5 s) and nnsight (~2 s) are imported only when first used.
"""

from __future__ import annotations

import importlib

from workbench.hooks.guard import MODEL_LOCK, guarded, model_lock
from workbench.hooks.names import hook_name, parse_hook_name, sites_filter

_LAZY = {
    "hooked": "tl_wrapper", "load_hooked": "tl_wrapper", "HookedLooped": "tl_wrapper", "HookedOutput": "tl_wrapper",
    "LoopCache": "cache", "stack_steps": "cache", "head_pattern": "cache",
    "StepView": "step_view", "StepConfig": "step_view",
    "nnsight_model": "nnsight_wrapper", "LoopedNNsight": "nnsight_wrapper",
    "Trajectory": "interventions", "trajectory": "interventions", "Injection": "interventions",
    "inject_corruption": "interventions", "Patched": "interventions", "patch": "interventions",
    "Ablation": "interventions", "ablate_heads": "interventions",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'workbench.hooks' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"workbench.hooks.{module}"), name)
    globals()[name] = value
    return value


__all__ = ["MODEL_LOCK", "guarded", "model_lock", "hook_name", "parse_hook_name", "sites_filter", *_LAZY]

"""The workbench: looped transformers that reason in latent space, and the tools to watch them think.

The public surface is small and imports lazily (torch and friends load on first use):

    import workbench as wb
    model = wb.load_model("default")
    wb.solve(model, "a = 3\\nb = a + a")
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from workbench.errors import WorkbenchError

_LAZY = {
    "load_model": "workbench.model.checkpoint",
    "save_model": "workbench.model.checkpoint",
    "available_models": "workbench.model.checkpoint",
    "LoopedModel": "workbench.model.looped",
    "ModelConfig": "workbench.model.config",
    "TaskConfig": "workbench.task.config",
    "parse_problem": "workbench.task.text",
    "format_problem": "workbench.task.text",
    "Problem": "workbench.task.text",
    "sample_graphs": "workbench.task.graphs",
    "tokenize": "workbench.task.tokens",
    "solve": "workbench.solving",  # not "workbench.solve": importing that submodule would bind it over the function
    "evaluate_sizes": "workbench.evaluation",
    "default_device": "workbench.device",
}

__all__ = ["WorkbenchError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")

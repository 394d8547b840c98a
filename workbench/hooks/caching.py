"""``cache_run``: TransformerLens's ``run_with_cache``, with a backward pass that works on a model without a loss.

TransformerLens's ``run_with_cache(..., incl_bwd=True)`` calls ``output.backward()``, which needs the
model to return a scalar (``return_type="loss"``). The looped model returns logits per factor and has
no next-token loss, so the backward pass here takes a ``metric``: a function of the output that gives
the scalar to differentiate (a logit, a logit difference, a cross-entropy against chosen codes).
Gradients are cached as ``<name>_grad``, as TransformerLens does; integer sites (the states the loop
reads and writes) have none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from workbench.errors import WorkbenchError

#: sites that carry integer codes: no gradient reaches them
INTEGER_SITES = ("hook_state", "hook_bottleneck")


def cache_run(root, args: Sequence[Any], kwargs: dict, *, names_filter=None, device=None, remove_batch_dim: bool = False,
              incl_bwd: bool = False, metric: Callable[[Any], Tensor] | None = None, pos_slice=None,
              reset_hooks_end: bool = True, clear_contexts: bool = False, fwd_hooks=()) -> tuple[Any, dict]:
    """Run ``root`` (a ``HookedRootModule``) once and return ``(output, {name: activation})``.

    ``fwd_hooks`` run before the caching hooks (the cache shows their edits). With ``incl_bwd`` the run
    keeps autograd, ``metric(output).backward()`` fills the ``*_grad`` entries, and the parameters'
    ``.grad`` are left as they were (an analysis does not leave gradients on a shared model).
    """
    if incl_bwd and metric is None:
        raise WorkbenchError("incl_bwd=True needs a scalar to backpropagate: pass metric=lambda logits: ... "
                             "(this model has no return_type='loss')")
    cache, fwd, bwd = root.get_caching_hooks(names_filter, incl_bwd, device, remove_batch_dim=remove_batch_dim,
                                             pos_slice=pos_slice)
    bwd = [(name, fn) for name, fn in bwd if not name.endswith(INTEGER_SITES)]
    with root.hooks(fwd_hooks=list(fwd_hooks) + fwd, bwd_hooks=bwd, reset_hooks_end=reset_hooks_end,
                    clear_contexts=clear_contexts):
        if not incl_bwd:
            return root(*args, **kwargs), cache
        params = [p for p in root.parameters() if p.requires_grad] or list(_shared_parameters(root))
        before = [p.grad for p in params]
        with torch.enable_grad():
            out = root(*args, **kwargs)
            value = metric(out)
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise WorkbenchError(f"metric must return a scalar tensor, got {type(value).__name__}"
                                     f"{'' if not isinstance(value, Tensor) else ' of shape ' + str(tuple(value.shape))}")
            if not value.requires_grad:
                raise WorkbenchError("metric's value does not depend on the run's last step; take it from the "
                                     "output logits (gradients stop at the discrete bottleneck)")
            value.backward()
        for p, grad in zip(params, before):
            p.grad = grad
    return out, cache


def _shared_parameters(root):
    """The parameters of the model a view reads (a view owns none)."""
    model = getattr(root, "_model", None)
    return [] if model is None else [p for p in model.parameters() if p.requires_grad]


__all__ = ["cache_run", "INTEGER_SITES"]

"""Hook names of the looped model: the one builder (``hook_name``) and the one parser (``parse_hook_name``).

Every hook point carries TransformerLens's suffix under a step prefix (0-based step and layer):

    loop.{t}.hook_state                      the discrete state fed into step t   [batch, pos, factor]
    loop.{t}.hook_embed                      its embedding                        [batch, pos, d_model]
    loop.{t}.blocks.{l}.hook_resid_pre|hook_attn_out|hook_resid_mid|hook_mlp_out|hook_resid_post
    loop.{t}.blocks.{l}.attn.hook_q|hook_k|hook_v|hook_z|hook_result          [batch, pos, head, ...]
    loop.{t}.blocks.{l}.attn.hook_attn_scores|hook_pattern                    [batch, head, query, key]
    loop.{t}.blocks.{l}.mlp.hook_pre|hook_post                                [batch, pos, d_mlp]
    loop.{t}.hook_final                      after the final LayerNorm            [batch, pos, d_model]
    loop.{t}.hook_logits.{f}                 logits of factor f                   [batch, pos, vocab_f]
    loop.{t}.hook_bottleneck                 the codes written back (step t's output state)

TransformerLens's ``get_act_name`` and ``hook.layer()`` do not understand the step prefix (``layer()``
would return the step): build and parse names here only. This module imports neither library.
"""

from __future__ import annotations

import functools

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from workbench.errors import WorkbenchError

#: the version of this naming scheme (written into model cards)
SCHEME = "loop-hooks/1"

#: sites of one block, in forward order
BLOCK_SITES: tuple[str, ...] = (
    "hook_resid_pre",
    "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",
    "attn.hook_result", "hook_attn_out", "hook_resid_mid",
    "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
)
#: sites of one step outside the blocks (``hook_logits`` takes a factor)
STEP_SITES: tuple[str, ...] = ("hook_state", "hook_embed", "hook_final", "hook_logits", "hook_bottleneck")
#: attention sites whose hooks make attention compute its pattern explicitly (no fused kernel)
ATTN_SITES: tuple[str, ...] = tuple(s for s in BLOCK_SITES if s.startswith("attn."))
_BLOCK_ORDER = {site: i for i, site in enumerate(BLOCK_SITES)}


@dataclass(frozen=True)
class HookSite:
    """A parsed hook name: ``step``, ``site`` (e.g. ``attn.hook_pattern``), ``layer`` and ``factor`` or None."""

    step: int
    site: str
    layer: int | None = None
    factor: int | None = None

    @property
    def name(self) -> str:
        return hook_name(self.step, self.site, layer=self.layer, factor=self.factor)

    @property
    def relative(self) -> str:
        """The name inside one step, as the model's ``tap`` sees it (``blocks.1.attn.hook_pattern``)."""
        return self.name.split(".", 2)[2]


def hook_name(step: int, site: str, layer: int | None = None, *, factor: int | None = None) -> str:
    """The full hook name of ``site`` at loop ``step`` (and ``layer`` for block sites, ``factor`` for logits).

    >>> hook_name(3, "attn.hook_pattern", layer=1)
    'loop.3.blocks.1.attn.hook_pattern'
    >>> hook_name(0, "hook_state"), hook_name(2, "hook_logits", factor=3)
    ('loop.0.hook_state', 'loop.2.hook_logits.3')
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise WorkbenchError(f"step must be a non-negative integer, got {step!r}")
    if site.startswith("hook_logits.") and factor is None:
        site, factor = "hook_logits", _index(site.split(".", 1)[1], "factor")
    if site in _BLOCK_ORDER:
        if layer is None or not isinstance(layer, int) or layer < 0:
            raise WorkbenchError(f"site '{site}' lives in a block: give layer=0, 1, ... (got {layer!r})")
        if factor is not None:
            raise WorkbenchError(f"site '{site}' takes no factor")
        return f"loop.{step}.blocks.{layer}.{site}"
    if site not in STEP_SITES:
        raise WorkbenchError(f"unknown hook site '{site}'; the sites are {list(STEP_SITES + BLOCK_SITES)}")
    if layer is not None:
        raise WorkbenchError(f"site '{site}' is not inside a block: give no layer")
    if site == "hook_logits":
        if factor is None or not isinstance(factor, int) or factor < 0:
            raise WorkbenchError("hook_logits is per factor: give factor=0..3 (syntax, variable, operation, value)")
        return f"loop.{step}.hook_logits.{factor}"
    if factor is not None:
        raise WorkbenchError(f"site '{site}' takes no factor")
    return f"loop.{step}.{site}"


def _index(text: str, what: str) -> int:
    if not text.isdigit():
        raise WorkbenchError(f"{what} must be a non-negative integer, got '{text}'")
    return int(text)


def parse_hook_name(name: str) -> HookSite:
    """The ``HookSite`` of a full hook name; ``WorkbenchError`` unless ``hook_name`` could have built it.

    Cached: a names filter is asked about every hook point of every step (tens of thousands for a long
    run of an N = 128 graph), and the names are few and immutable.

    >>> parse_hook_name("loop.3.blocks.1.attn.hook_pattern")
    HookSite(step=3, site='attn.hook_pattern', layer=1, factor=None)
    >>> parse_hook_name("loop.0.hook_logits.3").factor
    3
    """
    return _parse(name)


@functools.lru_cache(maxsize=1 << 16)
def _parse(name: str) -> HookSite:
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "loop" or not parts[1].isdigit():
        raise WorkbenchError(f"'{name}' is not a hook name; hook names look like 'loop.3.blocks.1.attn.hook_pattern'")
    step = int(parts[1])
    rest = parts[2:]
    if rest[0] == "blocks":
        if len(rest) < 3 or not rest[1].isdigit():
            raise WorkbenchError(f"'{name}' is not a hook name: expected 'loop.{step}.blocks.<layer>.<site>'")
        site = HookSite(step, ".".join(rest[2:]), int(rest[1]))
    elif rest[0] == "hook_logits" and len(rest) == 2:
        site = HookSite(step, "hook_logits", None, _index(rest[1], "factor"))
    else:
        site = HookSite(step, ".".join(rest))
    hook_name(site.step, site.site, site.layer, factor=site.factor)  # validates the site
    return site


@functools.lru_cache(maxsize=1 << 16)  # a cached run asks for the step of the same few thousand names each time
def step_of(name: str) -> int:
    """The loop step of a full hook name.

    >>> step_of("loop.12.hook_bottleneck")
    12
    """
    return parse_hook_name(name).step


def step_names(step: int, n_layers: int, n_factors: int = 4) -> list[str]:
    """Every hook name of one step, in the order the forward pass reaches them.

    >>> step_names(0, 1)[:3], len(step_names(0, 2))
    (['loop.0.hook_state', 'loop.0.hook_embed', 'loop.0.blocks.0.hook_resid_pre'], 36)
    """
    names = [hook_name(step, "hook_state"), hook_name(step, "hook_embed")]
    names += [hook_name(step, site, layer) for layer in range(n_layers) for site in BLOCK_SITES]
    names.append(hook_name(step, "hook_final"))
    names += [hook_name(step, "hook_logits", factor=f) for f in range(n_factors)]
    names.append(hook_name(step, "hook_bottleneck"))
    return names


def forward_order(name: str) -> tuple[int, int, int, int]:
    """A sort key putting hook names in the order one run reaches them (nnsight needs that order).

    >>> sorted(["loop.1.hook_state", "loop.0.hook_bottleneck", "loop.0.blocks.0.hook_resid_pre"], key=forward_order)
    ['loop.0.blocks.0.hook_resid_pre', 'loop.0.hook_bottleneck', 'loop.1.hook_state']
    """
    s = parse_hook_name(name)
    if s.layer is not None:
        return (s.step, 1, s.layer, _BLOCK_ORDER[s.site])
    group = {"hook_state": 0, "hook_embed": 0, "hook_final": 2, "hook_logits": 3, "hook_bottleneck": 4}[s.site]
    within = 1 if s.site == "hook_embed" else (s.factor or 0)
    return (s.step, group, 0, within)


def sites_filter(*sites: str, layers: Iterable[int] | None = None, steps: Iterable[int] | None = None) -> Callable[[str], bool]:
    """A TransformerLens ``names_filter``: True for the given sites (all if none), layers and steps.

    Sites are written as in ``hook_name`` (``"attn.hook_pattern"``, ``"hook_state"``; ``"hook_logits"``
    matches every factor).

    >>> keep = sites_filter("attn.hook_pattern", layers=[1])
    >>> keep("loop.4.blocks.1.attn.hook_pattern"), keep("loop.4.blocks.0.attn.hook_pattern")
    (True, False)
    """
    for site in sites:
        if site not in _BLOCK_ORDER and site not in STEP_SITES:
            raise WorkbenchError(f"unknown hook site '{site}'; the sites are {list(STEP_SITES + BLOCK_SITES)}")
    site_set = set(sites) or None
    layer_set = None if layers is None else set(layers)
    step_set = None if steps is None else set(steps)

    def keep(name: str) -> bool:
        s = parse_hook_name(name)
        return ((site_set is None or s.site in site_set) and (step_set is None or s.step in step_set)
                and (layer_set is None or s.layer in layer_set))
    return keep


__all__ = ["SCHEME", "BLOCK_SITES", "STEP_SITES", "ATTN_SITES", "HookSite", "hook_name", "parse_hook_name",
           "step_of", "step_names", "forward_order", "sites_filter"]

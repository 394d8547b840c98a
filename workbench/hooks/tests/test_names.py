"""Hook names: one builder, one parser, forward order."""

from __future__ import annotations

import pytest

from workbench.errors import WorkbenchError
from workbench.hooks.names import (BLOCK_SITES, HookSite, forward_order, hook_name, parse_hook_name, sites_filter,
                                   step_names)


@pytest.mark.parametrize("site", BLOCK_SITES)
def test_block_names_round_trip(site):
    name = hook_name(7, site, layer=3)
    assert name == f"loop.7.blocks.3.{site}"
    assert parse_hook_name(name) == HookSite(7, site, 3)
    assert parse_hook_name(name).relative == f"blocks.3.{site}"


@pytest.mark.parametrize("site", ["hook_state", "hook_embed", "hook_final", "hook_bottleneck"])
def test_step_names_round_trip(site):
    assert parse_hook_name(hook_name(0, site)) == HookSite(0, site)


def test_logits_are_named_per_factor():
    assert hook_name(2, "hook_logits", factor=3) == hook_name(2, "hook_logits.3") == "loop.2.hook_logits.3"
    assert parse_hook_name("loop.2.hook_logits.3") == HookSite(2, "hook_logits", None, 3)


@pytest.mark.parametrize("bad", ["blocks.0.hook_resid_pre", "loop.x.hook_state", "loop.1.hook_nothing",
                                 "loop.1.blocks.hook_resid_pre", "loop.1.blocks.0.attn.hook_nothing",
                                 "loop.1.hook_logits", "loop.1.blocks.0.hook_state"])
def test_malformed_names_raise_a_workbench_error(bad):
    with pytest.raises(WorkbenchError):
        parse_hook_name(bad)


def test_block_site_without_layer_raises():
    with pytest.raises(WorkbenchError, match="layer"):
        hook_name(0, "attn.hook_pattern")


def test_forward_order_sorts_names_as_a_step_runs():
    names = step_names(0, 2) + step_names(1, 2)
    assert sorted(reversed(names), key=forward_order) == names
    assert names[0] == "loop.0.hook_state" and names[-1] == "loop.1.hook_bottleneck"


def test_sites_filter_selects_sites_layers_and_steps():
    keep = sites_filter("attn.hook_pattern", "hook_state", layers=[1], steps=[2])
    assert keep("loop.2.blocks.1.attn.hook_pattern")
    assert not keep("loop.2.blocks.0.attn.hook_pattern")
    assert not keep("loop.3.blocks.1.attn.hook_pattern")
    assert not keep("loop.2.hook_state")  # a layer filter leaves out the sites outside blocks
    assert sites_filter("hook_logits")("loop.0.hook_logits.2")
    with pytest.raises(WorkbenchError):
        sites_filter("pattern")

"""The one model lock: concurrent calls through it give exactly the serial results."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import torch

from workbench.hooks import guarded, hooked, model_lock, nnsight_model
from workbench.hooks.interventions import trajectory


def test_concurrent_calls_through_the_guard_equal_the_serial_results(model, problems):
    hm = hooked(model, n_steps=4)
    nm = nnsight_model(hm)
    inputs = [hm.to_tokens(problems[i:] + problems[:i]) for i in range(4)]

    def work(i: int):
        with model_lock():
            _, cache = hm.run_with_cache(inputs[i], n_steps=3)
        with model_lock():
            _, saved = nm.save(inputs[i], ["loop.2.blocks.1.attn.hook_pattern"], n_steps=3)
        traj = trajectory(model, problems[i:] + problems[:i], n_steps=3)  # takes the lock itself
        return cache, saved, traj.values

    serial = [work(i) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(work, [i % 4 for i in range(12)]))
    for i, (cache, saved, values) in enumerate(concurrent):
        ref_cache, ref_saved, ref_values = serial[i % 4]
        assert cache.keys() == ref_cache.keys()
        assert all(torch.equal(cache[k], ref_cache[k]) for k in cache)
        assert torch.equal(saved["loop.2.blocks.1.attn.hook_pattern"], ref_saved["loop.2.blocks.1.attn.hook_pattern"])
        assert torch.equal(values, ref_values)


def test_guarded_calls_never_overlap():
    inside, overlaps = [0], []
    gate = threading.Lock()

    @guarded
    def critical():
        with gate:
            inside[0] += 1
            overlaps.append(inside[0])
        threading.Event().wait(0.002)
        with gate:
            inside[0] -= 1

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: critical(), range(16)))
    assert max(overlaps) == 1

"""MLP analysis: what each MLP contributes, and a 3-D Fourier analysis of the last one over Z_p^3.

Contribution (teacher-forced steps, so every step sees an in-distribution input): the relative
residual change ||mlp_out|| / ||resid_mid|| (and ||attn_out|| / ||resid_pre|| beside it) over real
positions and at the frontier's defining positions; and the ablation effect, the drop in the step's
accuracy when the MLP's output is replaced by zero or by its mean: on the frontier (nodes of depth t,
which step t must compute) and on the nodes already solved (which it must keep).

Fourier: a sampled graph in its solved state plus the template ``a + b + c = r`` (a, b, c three of
its leaves, r EMPTY); the three leaves' values sweep all of Z_p^3 and one step runs. At r, the MLP's
pre-activation, post-activation and output and the value logits (codes 0..p-1) are functions on
Z_p^3; their 3-D DFT power, summed over units, splits into ``bias`` (0,0,0), ``diagonal`` (a,a,a),
``axis`` (one nonzero frequency) and ``other``. Addition mod p lives on the diagonal.

Results (``run``): ``contribution`` {``mlp``, ``attn``, ``mlp_frontier``, ``attn_frontier``} [step][layer];
``ablation`` {``zero``, ``mean``} {``frontier``, ``kept``} [step][layer] and ``clean`` {frontier, kept} [step];
``fourier`` {``layer``, ``classes``, ``fractions`` {signal: {class: fraction}}, ``diagonal`` {signal: [a]} (power
at (a,a,a), a = 0..p-1), ``top`` {signal: [[kx, ky, kz, fraction], ...]}, ``axis_by_operand`` {signal: [a, b, c]}
(power on each operand's own axis: the signal follows that operand alone), ``accuracy``, ``accuracy_by_sum`` [s]}.
"""

from __future__ import annotations


import numpy as np
import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from workbench.analysis.activations import cached_runs, default_steps, sample_batch
from workbench.analysis.attribution import append_equation
from workbench.analysis.summary import MlpSummary
from workbench.hooks.names import hook_name, sites_filter, step_of
from workbench.hooks.tl_wrapper import hooked
from workbench.task.tokens import tokenize
from workbench.task.vocab import F_VALUE

CLASSES = ("bias", "diagonal", "axis", "other")
SIGNALS = ("pre", "post", "out", "logits")


def _frontier_index(tb, t: int):
    g = tb.graphs
    return np.nonzero(g.valid & (g.depth == t))


def contribution(hm, tb, *, n_steps: int, batch_size: int = 32, progress: bool = False) -> tuple[dict, np.ndarray]:
    """Relative residual changes [step, layer] (teacher-forced) and the mean MLP output [step, layer, d_model]."""
    L = hm.cfg.n_layers
    sums = {k: np.zeros((n_steps, L)) for k in ("mlp", "attn", "mlp_frontier", "attn_frontier")}
    counts = np.zeros((n_steps, 2))
    mean = np.zeros((n_steps, L, hm.cfg.d_model))
    keep = sites_filter("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out")
    for chunk in cached_runs(hm, tb, n_steps=n_steps, names_filter=keep, mode="teacher", batch_size=batch_size,
                             progress=progress, desc="mlp contribution"):
        sub, c = chunk.tb, chunk.cache
        real = torch.arange(sub.max_len)[None, :] < torch.from_numpy(sub.length)[:, None]
        for t in range(n_steps):
            b, n = _frontier_index(sub, t)
            fb, fp = torch.from_numpy(b), torch.from_numpy(sub.rhs_pos[b, n])
            counts[t] += (int(real.sum()), len(b))
            for layer in range(L):
                get = lambda site: c[hook_name(t, site, layer)].float().cpu()  # noqa: E731
                pre, attn, mid, mlp = get("hook_resid_pre"), get("hook_attn_out"), get("hook_resid_mid"), get("hook_mlp_out")
                ratio_m = mlp.norm(dim=-1) / mid.norm(dim=-1).clamp(min=1e-6)
                ratio_a = attn.norm(dim=-1) / pre.norm(dim=-1).clamp(min=1e-6)
                sums["mlp"][t, layer] += ratio_m[real].sum().item()
                sums["attn"][t, layer] += ratio_a[real].sum().item()
                sums["mlp_frontier"][t, layer] += ratio_m[fb, fp].sum().item()
                sums["attn_frontier"][t, layer] += ratio_a[fb, fp].sum().item()
                mean[t, layer] += mlp[real].sum(0).numpy()
    out = {}
    for k, v in sums.items():
        n = counts[:, 1 if k.endswith("frontier") else 0][:, None]
        out[k] = np.where(n > 0, v / np.maximum(n, 1), np.nan)
    return out, mean / np.maximum(counts[:, :1, None], 1)


def step_accuracy(hm, tb, *, n_steps: int, fwd_hooks=(), batch_size: int = 32) -> dict[str, np.ndarray]:
    """Teacher-forced accuracy of every step's output: ``frontier`` (depth == t) and ``kept`` (depth < t), [step]."""
    right, total = np.zeros((2, n_steps)), np.zeros((2, n_steps))
    keep = sites_filter("hook_bottleneck")
    for chunk in cached_runs(hm, tb, n_steps=n_steps, names_filter=keep, mode="teacher", batch_size=batch_size,
                             fwd_hooks=fwd_hooks):
        g, sub = chunk.tb.graphs, chunk.tb
        for t in range(n_steps):
            written = chunk.cache[hook_name(t, "hook_bottleneck")].cpu().numpy()[..., F_VALUE]
            for i, nodes in enumerate((g.valid & (g.depth == t), g.valid & (g.depth < t))):
                b, n = np.nonzero(nodes)
                right[i, t] += (written[b, sub.rhs_pos[b, n]] == g.value[b, n]).sum()
                total[i, t] += len(b)
    acc = np.where(total > 0, right / np.maximum(total, 1), np.nan)
    return {"frontier": acc[0], "kept": acc[1]}


def ablation(hm, tb, mean: np.ndarray, *, n_steps: int, batch_size: int = 32, progress: bool = False) -> dict:
    """Step accuracy with each layer's MLP output replaced by zero or by its mean ([step][layer] per metric)."""
    L = hm.cfg.n_layers
    out = {mode: {"frontier": np.zeros((n_steps, L)), "kept": np.zeros((n_steps, L))} for mode in ("zero", "mean")}
    bar = tqdm(total=2 * L, desc="mlp ablation", disable=not progress, dynamic_ncols=True, leave=False)
    for mode in ("zero", "mean"):
        for layer in range(L):
            def replace(act, hook, layer=layer, mode=mode):
                t = step_of(hook.name)
                if mode == "zero":
                    return torch.zeros_like(act)
                return torch.as_tensor(mean[t, layer], dtype=act.dtype, device=act.device).expand_as(act).clone()
            hooks = [(hook_name(t, "hook_mlp_out", layer), replace) for t in range(n_steps)]
            acc = step_accuracy(hm, tb, n_steps=n_steps, fwd_hooks=hooks, batch_size=batch_size)
            for k in ("frontier", "kept"):
                out[mode][k][:, layer] = acc[k]
            bar.update(1)
    bar.close()
    return out


# --------------------------------------------------------------------------------------------- Fourier
def frequency_classes(p: int) -> Int[np.ndarray, "p p p"]:
    """Class index (``CLASSES``) of every frequency (kx, ky, kz) in Z_p^3: [p, p, p].

    >>> c = frequency_classes(5)
    >>> int(c[0, 0, 0]), int(c[2, 2, 2]), int(c[0, 3, 0]), int(c[1, 2, 0])
    (0, 1, 2, 3)
    """
    k = np.arange(p)
    kx, ky, kz = np.meshgrid(k, k, k, indexing="ij")
    nonzero = (kx > 0).astype(int) + (ky > 0) + (kz > 0)
    out = np.full((p, p, p), 3)
    out[nonzero == 1] = 2
    out[(kx == ky) & (ky == kz) & (kx > 0)] = 1
    out[0, 0, 0] = 0
    return out


def fourier_power(f: Float[np.ndarray, "p p p *units"]) -> Float[np.ndarray, "p p p"]:
    """3-D DFT power over the first three axes, summed over the rest: [p, p, p, ...] -> [p, p, p] (sums to 1)."""
    F = np.fft.fftn(f.reshape(f.shape[:3] + (-1,)), axes=(0, 1, 2))
    power = (np.abs(F) ** 2).sum(-1)
    return power / max(power.sum(), 1e-30)


@torch.no_grad()
def sweep(hm, *, layer: int | None = None, n_nodes: int = 16, seed: int = 0, batch_size: int = 1024,
          progress: bool = False) -> dict[str, np.ndarray]:
    """The template ``a + b + c = r`` over all leaf values in Z_p^3: signals at r [p, p, p, units] and the value written."""
    p = hm.task.modulus
    layer = hm.cfg.n_layers - 1 if layer is None else layer
    base = sample_batch(hm, n_nodes, 1, seed=seed, depth_cap=6).graphs
    leaves = np.flatnonzero(base.leaf_value[0] >= 0)[:3]
    unused = np.setdiff1d(np.arange(hm.task.n_names), base.names[0, :int(base.n_nodes[0])])
    graphs = append_equation(base, 0, leaves[None], unused[:1], hm.task.op_indices[0])
    tb = tokenize(graphs, hm.vocab)
    last = int(graphs.n_nodes[0]) - 1
    state = tb.solved()[0]
    r = int(tb.rhs_pos[0, last])
    state[r, F_VALUE] = hm.vocab.empty
    grid = np.stack(np.meshgrid(*[np.arange(p)] * 3, indexing="ij"), -1).reshape(-1, 3)  # [p^3, 3]
    leaf_rhs = tb.rhs_pos[0, leaves]
    got = {s: [] for s in SIGNALS}
    written = []

    def grab(key):
        def fn(act, hook):
            got[key].append(act[:, r].float().cpu())
        return fn
    hooks = [(hook_name(0, "mlp.hook_pre", layer), grab("pre")), (hook_name(0, "mlp.hook_post", layer), grab("post")),
             (hook_name(0, "hook_mlp_out", layer), grab("out")), (hook_name(0, "hook_logits", factor=F_VALUE), grab("logits"))]
    starts = range(0, len(grid), batch_size)
    for start in tqdm(starts, desc="Z_p^3 sweep", disable=not progress, dynamic_ncols=True, leave=False):
        vals = grid[start:start + batch_size]
        states = np.repeat(state[None], len(vals), 0)
        for i in range(3):
            states[:, leaf_rhs[i], F_VALUE] = vals[:, i]
            states[:, leaf_rhs[i] - 2, F_VALUE] = vals[:, i]  # the leaf's constant token
        out = hm.run_with_hooks(torch.from_numpy(states).long().to(hm.device), n_steps=1, return_type="output",
                                fwd_hooks=hooks)
        written.append(out.states[1][:, r, F_VALUE].cpu().numpy())
    signals = {s: torch.cat(v).numpy().reshape(p, p, p, -1) for s, v in got.items()}
    signals["logits"] = signals["logits"][..., :p]
    return {**signals, "written": np.concatenate(written).reshape(p, p, p), "layer": layer}


def fourier(hm, *, layer: int | None = None, n_nodes: int = 16, seed: int = 0, progress: bool = False) -> dict:
    """Fourier class fractions, diagonal spectrum and top frequencies of the sweep's signals; sweep accuracy."""
    p = hm.task.modulus
    sw = sweep(hm, layer=layer, n_nodes=n_nodes, seed=seed, progress=progress)
    classes = frequency_classes(p)
    fractions, diagonal, top, axes = {}, {}, {}, {}
    for s in SIGNALS:
        power = fourier_power(sw[s])
        fractions[s] = {c: float(power[classes == i].sum()) for i, c in enumerate(CLASSES)}
        axes[s] = [float(power[1:, 0, 0].sum()), float(power[0, 1:, 0].sum()), float(power[0, 0, 1:].sum())]
        diagonal[s] = [float(power[a, a, a]) for a in range(p)]
        order = np.argsort(power.ravel())[::-1][:10]
        top[s] = [[*map(int, np.unravel_index(i, power.shape)), float(power.ravel()[i])] for i in order]
    x, y, z = np.meshgrid(*[np.arange(p)] * 3, indexing="ij")
    total = (x + y + z) % p
    right = sw["written"] == total
    return {"layer": sw["layer"], "classes": list(CLASSES), "fractions": fractions, "diagonal": diagonal, "top": top,
            "axis_by_operand": axes,
            "accuracy": float(right.mean()), "accuracy_by_sum": [float(right[total == v].mean()) for v in range(p)]}


def run(model, *, n_nodes: int = 16, count: int = 64, depth_cap: int | None = 6, n_steps: int | None = None,
        layer: int | None = None, seed: int = 0, batch_size: int = 32, progress: bool = False) -> tuple[dict, MlpSummary]:
    """Contribution and ablation of every MLP, and the Fourier analysis of one (the last); ``(results, summary)``."""
    hm = hooked(model)
    if layer is not None and not 0 <= layer < hm.cfg.n_layers:
        from workbench.errors import WorkbenchError

        raise WorkbenchError(f"layer must be 0..{hm.cfg.n_layers - 1}, got {layer}")
    tb = sample_batch(hm, n_nodes, count, seed=seed, depth_cap=depth_cap)
    T = n_steps or default_steps(tb, extra=0, cap=8)
    contrib, mean = contribution(hm, tb, n_steps=T, batch_size=batch_size, progress=progress)
    clean = step_accuracy(hm, tb, n_steps=T, batch_size=batch_size)
    abl = ablation(hm, tb, mean, n_steps=T, batch_size=batch_size, progress=progress)
    four = fourier(hm, layer=layer, n_nodes=n_nodes, seed=seed, progress=progress)
    results = {"steps": list(range(T)), "layers": hm.cfg.n_layers, "contribution": contrib, "clean": clean,
               "ablation": abl, "fourier": four}
    layers = range(hm.cfg.n_layers)
    f = four["fractions"]
    summary = MlpSummary(
        rel_change={l: float(np.nanmean(contrib["mlp"][:, l])) for l in layers},
        ablation_drop={l: float(np.nanmean(clean["frontier"] - abl["mean"]["frontier"][:, l])) for l in layers},
        clean_frontier_acc=float(np.nanmean(clean["frontier"])), sweep_accuracy=float(four["accuracy"]),
        pre_bias_share=float(f["pre"]["bias"]),
        diagonal_share={stage: float(f[stage]["diagonal"]) for stage in ("post", "out", "logits")},
        logits_axis_share=tuple(float(v) for v in four["axis_by_operand"]["logits"]))
    return results, summary


def figures(result: dict) -> list:
    """MLP figures: contribution per step and layer, ablation effects, Fourier classes and diagonal spectrum."""
    from workbench.plots.analysis import Bars, Figure, Heatmap, Lines

    r = result["results"]
    steps, layers = r["steps"], [f"L{l}" for l in range(r["layers"])]
    c = r["contribution"]
    contrib = [Heatmap(title, c[key], layers, steps, "layer", "step", 0, None) for key, title in
               (("mlp", "||mlp_out|| / ||resid_mid|| (all positions)"), ("attn", "||attn_out|| / ||resid_pre||"),
                ("mlp_frontier", "MLP, frontier rhs"), ("attn_frontier", "attention, frontier rhs"))]
    abl = []
    for metric in ("frontier", "kept"):
        series = {"clean": r["clean"][metric]}
        for mode in ("zero", "mean"):
            for l, name in enumerate(layers):
                series[f"{name} MLP {mode}-ablated"] = [row[l] for row in r["ablation"][mode][metric]]
        abl.append(Lines(f"step accuracy: {metric} nodes", steps, series, "step", "accuracy", 0, 1, dashed=("clean",)))
    f = r["fourier"]
    classes = f["classes"]
    bars = Bars(f"3-D DFT power by class (MLP {f['layer']} at the template rhs)", list(SIGNALS),
                {c: [f["fractions"][s][c] for s in SIGNALS] for c in classes}, "signal", "fraction of power", 0, 1)
    diag = Lines("power at diagonal frequencies (a,a,a), a > 0", list(range(1, len(f["diagonal"]["pre"]))),
                 {s: f["diagonal"][s][1:] for s in SIGNALS}, "a", "fraction of power")
    acc = Bars(f"sweep accuracy by true sum (overall {f['accuracy']:.2f})", list(range(len(f["accuracy_by_sum"]))),
               {"accuracy": f["accuracy_by_sum"]}, "(a+b+c) mod p", "fraction right", 0, 1)
    return [Figure("contribution", "MLP and attention contributions (teacher-forced steps)", contrib),
            Figure("ablation", "MLP ablation: accuracy of each step's output", abl),
            Figure("fourier", "Fourier analysis of the last MLP over Z_p^3", [bars, diag, acc])]


__all__ = ["CLASSES", "SIGNALS", "contribution", "step_accuracy", "ablation", "frequency_classes", "fourier_power",
           "sweep", "fourier", "MlpSummary", "run", "figures"]

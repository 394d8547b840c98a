"""Head attribution by controlled experiments, OV factor amplification, controlled-experiment accuracy.

Template experiment (the paper's Section 5): take a sampled graph in its solved state, append one
equation ``v0 + v1 + v2 = rhs`` (fan-in k = 1, 2 or 3) whose value is still EMPTY, and vary one slot
across a batch (an operand over the graph's nodes, or the result's name over the unused names) with
everything else fixed. One step runs; each head's output at the rhs position, o_h = z_h W_O[h] (no
bias), is compared across the batch: rel_var = E||o - E o||^2 / E||o||^2. A head whose output follows
slot s serves that slot; the derived head groups are the paper's "v0 {4, 8}, v1 {5, 12}, ...".
The same batches give the controlled-experiment accuracy: the value the step writes at the rhs
against the true sum.

OV amplification: ||P_f OV_h P_f||_op per head and factor, OV_h = diag(ln1 weight) W_V[h] W_O[h], P_f the
projection on the span of factor f's (LayerNorm-centred) embeddings, truncated to 90 % of their energy;
``ratio`` divides by the same norm for random subspaces of equal rank (1 = no preference).

Results (``run``): ``rel_var[k][layer][head][slot]`` (slots v0, v1, v2, rhs; null where absent),
``groups[k][layer][slot]`` (heads), ``accuracy[k]``, ``accuracy_by_template[k][template]``, ``confusion`` [true][predicted] for the largest k,
``ov`` {``amplification``, ``ratio`` [layer][head][factor], ``rank`` [factor]}.
"""

from __future__ import annotations


import numpy as np
import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from workbench.analysis.activations import sample_batch
from workbench.analysis.summary import AttributionSummary
from workbench.hooks.names import hook_name, parse_hook_name
from workbench.hooks.tl_wrapper import hooked
from workbench.task.graphs import Graphs, compute_depth, evaluate
from workbench.task.tokens import tokenize
from workbench.task.vocab import F_VALUE, FACTORS

SLOTS = ("v0", "v1", "v2", "rhs")


def append_equation(g: Graphs, row: int, parents: np.ndarray, names: np.ndarray, op: int = 0) -> Graphs:
    """Copies of graph ``row``, each with one equation appended: parents [batch, k] (node indices), names [batch]."""
    n = int(g.n_nodes[row])
    B, k = parents.shape
    rep = lambda a: np.repeat(a[row:row + 1, :n], B, axis=0)  # noqa: E731
    new_par = np.full((B, 1, 3), -1)
    new_par[:, 0, :k] = parents
    new_ops = np.full((B, 1, 2), -1)
    new_ops[:, 0, :k - 1] = op
    par = np.concatenate([rep(g.parents), new_par], 1)
    ops = np.concatenate([rep(g.ops), new_ops], 1)
    leaf = np.concatenate([rep(g.leaf_value), np.full((B, 1), -1)], 1)
    valid = np.ones((B, n + 1), dtype=bool)
    return Graphs(par, ops, leaf, evaluate(par, ops, leaf, g.modulus), compute_depth(par, valid),
                  np.concatenate([rep(g.names), names[:, None]], 1), np.full(B, n + 1), g.modulus)


def template_batches(g: Graphs, row: int, k: int, n_names: int, rng: np.random.Generator, max_batch: int = 24,
                     op: int = 0):
    """Yield ``(slot, graphs)``: graph ``row`` plus a fan-in-k equation, one slot varied per batch."""
    n = int(g.n_nodes[row])
    base = rng.choice(n, size=k, replace=False)
    unused = np.setdiff1d(np.arange(n_names), g.names[row, :n])
    name = rng.choice(unused)
    for s in range(k):
        others = np.delete(base, s)
        cands = np.setdiff1d(np.arange(n), others)
        cands = rng.permutation(cands)[:max_batch]
        par = np.repeat(base[None], len(cands), 0)
        par[:, s] = cands
        yield SLOTS[s], append_equation(g, row, par, np.full(len(cands), name), op)
    names = rng.permutation(unused)[:max_batch]
    yield "rhs", append_equation(g, row, np.repeat(base[None], len(names), 0), names, op)


@torch.no_grad()
def head_outputs(hm, graphs: Graphs) -> tuple[Float[np.ndarray, "layer batch head d_model"], Int[np.ndarray, "batch"], Int[np.ndarray, "batch"]]:
    """One step on the solved state with the last equation EMPTY: per layer the heads' outputs at its rhs
    [layer, batch, head, d_model], the value written there [batch] and the true value [batch]."""
    tb = tokenize(graphs, hm.vocab)
    last = int(graphs.n_nodes[0]) - 1
    state = tb.solved()
    rhs = tb.rhs_pos[:, last]
    state[np.arange(tb.batch), rhs, F_VALUE] = hm.vocab.empty
    outs = {}

    def grab(z, hook):
        layer = parse_hook_name(hook.name).layer
        outs[layer] = torch.einsum("bhd,hdm->bhm", z[torch.arange(z.shape[0]), torch.from_numpy(rhs)].float(),
                                   hm.model.blocks[layer].attn.W_O.float())
    L = hm.cfg.n_layers
    out = hm.run_with_hooks(torch.from_numpy(state).long().to(hm.device), lengths=torch.from_numpy(tb.length).long(),
                            n_steps=1, return_type="output",
                            fwd_hooks=[(hook_name(0, "attn.hook_z", layer), grab) for layer in range(L)])
    written = out.states[1].cpu()[torch.arange(tb.batch), torch.from_numpy(rhs), F_VALUE].numpy()
    return torch.stack([outs[layer].cpu() for layer in range(L)]).numpy(), written, graphs.value[:, last]


def relative_variance(o: Float[np.ndarray, "*rest batch head d_model"]) -> Float[np.ndarray, "*rest head"]:
    """E||o - E o||^2 / E||o||^2 over the batch: [..., batch, head, d_model] -> [..., head].

    >>> float(relative_variance(np.ones((1, 5, 1, 3)))[0, 0])
    0.0
    """
    centred = o - o.mean(-3, keepdims=True)
    return (centred ** 2).sum(-1).mean(-2) / np.maximum((o ** 2).sum(-1).mean(-2), 1e-12)


def head_groups(rel_var: Float[np.ndarray, "layer slot head"], *, min_var: float = 0.1, ratio: float = 1.5) -> list[dict[str, list[int]]]:
    """Per layer {slot: heads}: a head joins the slot its output varies with most (>= min_var, >= ratio x the next).

    >>> head_groups(np.array([[[0.5, 0.0, np.nan, 0.1], [0.0, 0.0, np.nan, 0.0]]]))
    [{'v0': [0]}]
    """
    out = []
    for layer in rel_var:  # [head, slot]
        groups: dict[str, list[int]] = {}
        for h, v in enumerate(layer):
            v = np.nan_to_num(v, nan=-1.0)
            order = np.argsort(v)[::-1]
            if v[order[0]] >= min_var and v[order[0]] >= ratio * max(v[order[1]], 0.0):
                groups.setdefault(SLOTS[order[0]], []).append(h)
        out.append(groups)
    return out


def factor_bases(model, energy: float = 0.9) -> list[np.ndarray]:
    """Per factor an orthonormal basis [d_model, r_f] of its centred embeddings' span (``energy`` of it)."""
    bases = []
    for table in hooked(model).model.embed.W_E:
        E = table.weight.detach().float().cpu().numpy()
        E = E - E.mean(1, keepdims=True)  # LayerNorm removes the mean over d_model
        _, s, vt = np.linalg.svd(E, full_matrices=False)
        r = int(np.searchsorted(np.cumsum(s ** 2) / (s ** 2).sum(), energy) + 1)
        bases.append(vt[:r].T)
    return bases


def ov_amplification(model, *, energy: float = 0.9, n_random: int = 8, seed: int = 0) -> dict:
    """||P_f OV_h P_f||_op per [layer, head, factor], its ratio to random subspaces of equal rank, the ranks."""
    hm = hooked(model)
    bases = factor_bases(hm, energy)
    rng = np.random.default_rng(seed)
    D = hm.cfg.d_model
    randoms = [[np.linalg.qr(rng.normal(size=(D, U.shape[1])))[0] for _ in range(n_random)] for U in bases]
    L, H = hm.cfg.n_layers, hm.cfg.n_heads
    amp, ratio = np.zeros((L, H, len(bases))), np.zeros((L, H, len(bases)))
    for layer, block in enumerate(hm.model.blocks):
        gamma = block.ln1.weight.detach().float().cpu().numpy()
        W_V = block.attn.W_V.detach().float().cpu().numpy()
        W_O = block.attn.W_O.detach().float().cpu().numpy()
        for h in range(H):
            ov = (gamma[:, None] * W_V[h]) @ W_O[h]  # [d_model, d_model], acting on row vectors
            for f, U in enumerate(bases):
                amp[layer, h, f] = np.linalg.norm(U.T @ ov @ U, 2)
                base = np.mean([np.linalg.norm(R.T @ ov @ R, 2) for R in randoms[f]])
                ratio[layer, h, f] = amp[layer, h, f] / max(base, 1e-12)
    return {"amplification": amp, "ratio": ratio, "rank": [U.shape[1] for U in bases], "factors": list(FACTORS)}


def run(model, *, n_nodes: int = 16, templates: int = 24, fan_ins: tuple[int, ...] = (1, 2, 3), max_batch: int = 24,
        seed: int = 0, progress: bool = False) -> tuple[dict, AttributionSummary]:
    """Template experiments on ``templates`` graphs per fan-in, plus OV amplification; ``(results, summary)``."""
    hm = hooked(model)
    fan_ins = tuple(k for k in fan_ins if 1 <= k <= hm.task.max_fan_in)
    tb = sample_batch(hm, n_nodes, templates, seed=seed, depth_cap=6)
    rng = np.random.default_rng(seed)
    L, H, p = hm.cfg.n_layers, hm.cfg.n_heads, hm.task.modulus
    op = hm.task.op_indices[0]
    rel = np.full((len(fan_ins), L, H, len(SLOTS)), np.nan)
    accuracy, per_template, confusion = [], [], np.zeros((p, p), dtype=np.int64)
    bar = tqdm(total=len(fan_ins) * templates, desc="templates", disable=not progress, dynamic_ncols=True, leave=False)
    for i, k in enumerate(fan_ins):
        sums, counts, right, total = np.zeros((L, H, len(SLOTS))), np.zeros(len(SLOTS)), 0, 0
        per_template.append([])
        for row in range(templates):
            row_right = row_total = 0
            for slot, graphs in template_batches(tb.graphs, row, k, hm.task.n_names, rng, max_batch, op):
                o, written, truth = head_outputs(hm, graphs)
                j = SLOTS.index(slot)
                sums[..., j] += relative_variance(o)
                counts[j] += 1
                right += int((written == truth).sum())
                total += len(truth)
                row_right, row_total = row_right + int((written == truth).sum()), row_total + len(truth)
                if k == fan_ins[-1]:
                    np.add.at(confusion, (truth, np.clip(written, 0, p - 1)), (written < p).astype(np.int64))
            per_template[-1].append(row_right / max(row_total, 1))
            bar.update(1)
        rel[i] = sums / np.where(counts > 0, counts, np.nan)
        accuracy.append(right / max(total, 1))
    bar.close()
    groups = [head_groups(r) for r in rel]
    ov = ov_amplification(hm, seed=seed)
    results = {"fan_ins": list(fan_ins), "slots": list(SLOTS), "layers": L, "heads": H, "templates": templates,
               "rel_var": rel, "groups": groups, "accuracy": accuracy, "accuracy_by_template": per_template,
               "confusion": confusion, "ov": ov}
    dominant = ov["ratio"].argmax(-1)  # [layer, head]
    summary = AttributionSummary(
        accuracy={k: float(a) for k, a in zip(fan_ins, accuracy)},
        accuracy_range={k: (float(min(per)), float(max(per))) for k, per in zip(fan_ins, per_template)},
        groups={layer: "; ".join(f"{s}: {hs}" for s, hs in g.items()) or "none" for layer, g in enumerate(groups[-1])},
        groups_fan_in=int(fan_ins[-1]),
        ov_top={layer: tuple(FACTORS[f][:3] for f in dominant[layer]) for layer in range(L)})
    return results, summary


def figures(result: dict) -> list:
    """Attribution figures: heads x slot relative variance per fan-in and layer, OV amplification, accuracy."""
    from workbench.plots.analysis import Bars, Figure, Heatmap

    r = result["results"]
    heads = list(range(r["heads"]))
    figs = []
    for i, k in enumerate(r["fan_ins"]):
        panels = [Heatmap(f"layer {layer}, fan-in {k}", [list(row) for row in r["rel_var"][i][layer]], r["slots"],
                          heads, "varied slot", "head", 0, 1) for layer in range(r["layers"])]
        figs.append(Figure(f"rel_var_k{k}", f"Relative variance of each head's output at the rhs (fan-in {k} template)",
                           panels, cols=r["layers"]))
    ov = r["ov"]
    panels = [Heatmap(f"layer {layer}: amplification / random subspace", ov["ratio"][layer],
                      [f"{f} (r={n})" for f, n in zip(ov["factors"], ov["rank"])], heads, "factor", "head", 0, None)
              for layer in range(r["layers"])]
    figs.append(Figure("ov", "OV-circuit factor amplification ||P_f OV P_f|| relative to random subspaces", panels,
                       cols=r["layers"]))
    conf = np.array(r["confusion"], dtype=float)
    conf = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    p = len(conf)
    figs.append(Figure("accuracy", "Controlled experiment: value written at the template rhs",
                       [Bars("accuracy by fan-in", [f"k={k}" for k in r["fan_ins"]], {"accuracy": r["accuracy"]},
                             "template", "fraction right", 0, 1),
                        Heatmap(f"predicted vs true (k={r['fan_ins'][-1]}), row-normalized", conf.tolist(),
                                list(range(p)), list(range(p)), "predicted", "true", 0, 1, annotate=False)]))
    return figs


__all__ = ["SLOTS", "append_equation", "template_batches", "head_outputs", "relative_variance", "head_groups",
           "factor_bases", "ov_amplification", "AttributionSummary", "run", "figures"]

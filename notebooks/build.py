"""Write the workbench's notebooks (``notebooks/*.ipynb``) from the cells below, without outputs.

The notebooks are generated so that they stay reviewable as plain Python and are stored without
outputs; ``tests/test_notebooks.py`` executes every one and checks that the stored files match this
script. To change a notebook, edit its cells here and run

    .venv/bin/python notebooks/build.py

Each notebook sets torch to one thread in its first cell and uses small batches, so it runs top to
bottom on a laptop CPU in well under two minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import warnings
import torch
torch.set_num_threads(1)  # a small model: one thread is as fast, and leaves the other cores alone
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
"""

BUDGET = '''\
text = """
# a small budget: any names, lines in any order, '#' comments
total    = price + tax
price    = 17
tax      = 9
discount = 4
fee      = 3
net      = total + discount
shipping = net                # a copy
final    = shipping + fee + tax
"""'''


def md(text: str):
    return new_markdown_cell(dedent(text).strip("\n"))


def code(*parts: str):
    """A code cell from parts, each dedented on its own (shared snippets sit at column 0)."""
    return new_code_cell("\n".join(dedent(part).strip("\n") for part in parts))


# --------------------------------------------------------------------------------------------- 1
QUICKSTART = [
    md("""
    # 1 · Quickstart: watch a looped model solve a problem, step by step

    The workbench's models solve **modular arithmetic on computational graphs**: leaves hold constants
    mod p, every other variable adds up one to three earlier ones, and the model must output the value
    of every variable. The model is a small transformer block stack that is **applied again and again
    to its own output** (recurrence, the same weights at every step). Between two steps its output
    passes a **discrete bottleneck**: it is decoded into tokens, so the state that step t+1 reads is a
    sequence of tokens, the problem with some values filled in. That is what makes the model's latent
    reasoning readable: every intermediate state *is* a partially solved problem.

    Two more mechanisms from the paper (arXiv 2510.14095) shape what you will see:
    - **algorithmic supervision** trained step t to write exactly the variables of depth t (leaves at
      step 0, their direct children at step 1, ...), so a trained model fills the graph one depth
      level per step and then stops changing (a fixed point: the model halts on its own);
    - **error correction** trained it on states with wrong values injected, so it rewrites a wrong
      value instead of trusting its own state (notebook 4).

    This notebook loads the shipped model, solves a problem written in the text format, and looks at
    its trajectory. The numbers printed below are measured on the model as it is now; the text says
    what to look for.
    """),
    code(SETUP, """
    import numpy as np
    import workbench as wb
    from workbench.hooks.interventions import trajectory
    from workbench.plots import notebook_figures as nf
    from workbench.task.text import problems_to_graphs, solve_exact
    """),
    md("""
    ## Load a model

    Models live in `models/<name>/` (weights in safetensors, a `config.json`, a model card).
    `wb.load_model` takes a name or a folder path. The config records the four mechanisms, and the
    metadata how far training got: a model still in training is exported from time to time, so check
    before reading too much into the numbers.
    """),
    code("""
    print("models:", wb.available_models())
    model = wb.load_model("default")
    cfg, task = model.cfg, model.task
    print(f"{cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}")
    print(f"recurrence={cfg.recurrence}, latent={cfg.latent}, supervision={cfg.supervision}, "
          f"error-correction probability={cfg.corruption_prob}")
    print(f"task: values mod {task.modulus}, operations {list(task.operations)}, "
          f"at most {task.max_fan_in} operands, a pool of {task.n_names} variable names")
    training = model.meta.get("training", {})
    print(f"training: step {training.get('steps')} of {training.get('total_steps')}, "
          f"last phase {training.get('last_phase')!r}, finished: {training.get('finished')}")
    """),
    md("""
    ## Write a problem

    The text format is the one contract of the CLI, the app and these notebooks: one equation per
    line, `name = 17` for a leaf or `name = a + b + c`, any identifiers, lines in any order.
    `parse_problem` checks it against the model's task and puts the equations in **model order** (by
    depth), the order in which the model reads them. A variable's depth is the number of steps a model
    on the algorithmic schedule needs before it can write it.
    """),
    code(BUDGET, """

    problem = wb.parse_problem(text, model.task)
    print(wb.format_problem(problem))
    print("depths:", problem.depth)
    """),
    md("Bad input raises a `WorkbenchError` with one line that says what to fix:"),
    code("""
    for bad in ["a = 3\\nb = a / 2", "a = 3\\nb = a + c", "a = 30\\nb = a"]:
        try:
            wb.parse_problem(bad, model.task)
        except wb.WorkbenchError as err:
            print("WorkbenchError:", err)
    """),
    md("""
    ## Solve it

    `wb.solve` runs the loop until the state stops changing: nobody tells the model how many steps to
    take. `solve_exact` computes the ground truth by plain integer arithmetic. A value of `None` means
    the model left that variable unwritten (or wrote something that is not a value).
    """),
    code("""
    solution = wb.solve(model, problem)
    truth = solve_exact(problem, model.task.modulus)
    print(f"stopped after {solution.iterations} steps, converged: {solution.converged}")
    for name in problem.names:
        got = solution.values[name]
        verdict = "right" if got == truth[name] else "WRONG"
        print(f"{name:>9} = {str(got):>4}   (true {truth[name]:>2}, depth {problem.depth[name]})  {verdict}")
    n_right = sum(solution.values[n] == truth[n] for n in problem.names)
    print(f"{n_right} of {len(problem)} variables right")
    """),
    md("""
    ## The trajectory: the state after every step

    `trajectory` runs the hookable model (`workbench.hooks`) and decodes the state after each step at
    every variable's defining position. `values[0]` is the input (every variable still empty, `?`),
    `values[t + 1]` the state after step t (steps count from 0). We run a few steps past the deepest
    variable, so that a model that has finished can be seen standing still.

    Below, `*` marks a value that this step changed. On the algorithmic schedule, the variables of
    depth d appear after step d and never change again; a value that changes twice is a correction
    (or a new mistake).
    """),
    code("""
    n_steps = max(problem.depth.values()) + 3
    traj = trajectory(model, problem, n_steps=n_steps)
    print("values:", tuple(traj.values.shape), "= [step + 1, batch, node]")
    empty = model.vocab.empty
    for t in range(traj.n_steps + 1):
        cells = []
        for i, name in enumerate(problem.names):
            v = int(traj.values[t, 0, i])
            changed = t > 0 and bool(traj.changed[t - 1, 0, i])
            cells.append(f"{name}={'?' if v == empty else v}{'*' if changed else ' '}")
        print(f"{'input' if t == 0 else f'after step {t - 1}':>12}:  " + " ".join(cells))
    """),
    md("""
    `first_correct` is the first step whose output holds the true value, `settled` the step from which
    it holds it for good (-1: never). For a model that follows the schedule both equal the depth.
    """),
    code("""
    first, settled = traj.first_correct[0].tolist(), traj.settled[0].tolist()
    never = lambda s: "never" if s < 0 else s
    for i, name in enumerate(problem.names):
        print(f"{name:>9}: depth {problem.depth[name]}, first right after step {never(first[i])}, "
              f"right for good from step {never(settled[i])}")
    """),
    md("""
    The same trajectory as a grid: rows are variables in model order (with their depth), columns the
    states. Grey cells are not written yet, green ones hold the true value, red ones a wrong value;
    a black dot marks a cell that step changed. A model on the schedule draws a green staircase
    whose steps are the depths.
    """),
    code("""
    nf.state_grid(traj, names=problem.names, title="The budget problem, step by step")
    """),
    md("""
    ### The whole state as tokens

    The bottleneck decodes **every factor of every position** (syntax, variable, operation, value)
    from the step's logits, not only the values: a trained model copies the first three unchanged and
    fills in values at the result positions (after `=`), while an untrained one may rewrite anything.
    The model never sees your names: `problems_to_graphs` maps them onto its own pool (`x_17`, ...),
    one fixed permutation per seed. Mapping back, here is every equation as the input has it and as
    the last state has it (`name=?` is still empty):
    """),
    code("""
    _, (mapping,) = problems_to_graphs([problem], model.task, seed=0)
    pool_to_name = {index: name for name, index in mapping.items()}
    print("your names on the model's pool:", {name: f"x_{index}" for name, index in mapping.items()})
    first, last = traj.states[0, 0].numpy(), traj.states[-1, 0].numpy()
    before = " ".join(nf.token_labels(first, model.vocab, pool_to_name)).split(" SEP ")
    after = " ".join(nf.token_labels(last, model.vocab, pool_to_name)).split(" SEP ")
    for b, a in zip(before, after):
        print(f"{b:<40} ->  {a}")
    rewritten = (first[:, :3] != last[:, :3]).any(-1).sum()
    print(f"positions whose syntax, variable or operation factor the model changed: {rewritten} of {len(first)}")
    """),
    md("""
    ## Many problems: does the model follow the schedule?

    One problem is an anecdote. Here are 64 random graphs of 16 nodes (the training distribution's
    size range), sampled with the paper's law. The heatmap counts variables by depth (rows) and by the
    step after which they first hold their true value (columns): a model on the algorithmic schedule
    puts everything on the outlined diagonal; mass to the right of it means the model is late, the
    `never` column counts what it has not learned (yet).
    """),
    code("""
    graphs = wb.sample_graphs(16, 64, rng=np.random.default_rng(0), task=model.task)
    batch = trajectory(model, graphs, n_steps=int(graphs.max_depth.max()) + 3)
    real = batch.node_mask.sum().item()
    on_schedule = ((batch.first_correct == batch.depth) & batch.node_mask).sum().item()
    print(f"{graphs.batch} graphs of 16 nodes, depth up to {int(graphs.max_depth.max())}")
    print(f"variables right after the last step: {100 * batch.node_accuracy()[-1]:.1f}%, "
          f"graphs fully solved: {100 * batch.solved.float().mean():.1f}%")
    print(f"variables first right exactly at step = depth: {100 * on_schedule / real:.1f}%")
    nf.schedule_figure(batch)
    """),
    md("""
    The stepwise curve: the share of variables (solid) and of whole graphs (dashed) that are right
    after each step. With the schedule, the graph curve jumps to its final level at the step that
    equals the deepest variable's depth. Below it, **halting**: the free-running loop stops at the
    first step that changes nothing. `iterations` counts the steps up to the last change, so a model
    on the schedule, whose last change writes the deepest variable, takes max depth + 1.
    """),
    code("""
    nf.stepwise_figure({"default": batch}).show()
    free = trajectory(model, graphs)  # no step count: run until the state stops changing
    steps_taken = free.iterations.float()
    needed = torch.from_numpy(graphs.max_depth).float() + 1
    print(f"free-running: {100 * free.converged.float().mean():.0f}% of graphs reached a fixed point; "
          f"iterations: mean {steps_taken.mean():.2f}, against max depth + 1 = {needed.mean():.2f} on the schedule; "
          f"equal in {100 * (steps_taken == needed).float().mean():.0f}% of graphs")
    """),
    md("""
    ## Where next

    - [2 · attention routing through the TransformerLens cache](02_attention_routing.ipynb): which
      tokens each head reads at every step;
    - [3 · probes and the bottleneck lens](03_probes_and_lens.ipynb): what the residual stream
      encodes before the bottleneck;
    - [4 · error correction](04_error_correction.ipynb): inject a wrong value and watch the repair;
    - [5 · attention routing through nnsight](05_routing_nnsight.ipynb): the same as 2, with nnsight.
    """),
]


# --------------------------------------------------------------------------------------------- 2
ROUTING_INTRO = """
    The paper (§5) takes its 2-layer model apart at one step, at the position where an equation's
    result is written (its *result position*, the variable token after `=`):
    - **layer 1 heads identify the variables**: they attend to the operand tokens of the result's own
      equation and copy *which variable* each operand is (heads split by operand slot);
    - **layer 2 heads retrieve the values by induction**: using the copied identities as queries,
      they attend to each operand's *defining position* (the result position of its own equation,
      where an earlier step wrote its value) and copy the value;
    - the last MLP adds the values mod p.

    Both lookups are content-addressed, so they work at any length and any position, and the
    bottleneck feeds every step an in-distribution state, so the same circuit can run at every step.
    A looped model adds a question the paper's single-step analysis leaves open: **do the heads keep
    their roles across steps?** Our heads are not the authors' (head indices differ from model to
    model), and our models need not run the authors' circuit, so we measure what is there: for every
    step, layer and head, the attention mass
    - from each **operand token** onto its variable's **defining position** ("lookup"),
    - from each **result position** onto its **own operand tokens** ("gather", by slot), and
    - from each result position onto its **operands' defining positions** ("induction"),

    each averaged over the queries whose source is already written in the step's input. Under uniform
    causal attention all three are small (a query sees every earlier token), so a score near 1 is a
    head that does one of these jobs.
"""

ROUTING_MASKS = '''\
from workbench.analysis import routing  # the one definition of the routing measures, roles and thresholds

MEASURE_LABELS = {"operand_lookup": "operand token -> its definition (lookup)",
                  "gather": "result -> own operand tokens (gather)",
                  "induction": "result -> parents' definitions (induction)"}


def routing_scores(patterns, states, tb):
    """The library's measures per step, layer and head, and what uniform causal attention would score.

    patterns [step, layer, batch, head, query, key]; states [step, batch, pos, factor], the state each
    step read (a measure counts only queries whose source is already written there).
    """
    layout = routing.Layout.of(tb)
    sums = [routing.measure_step(list(patterns[t]), layout, routing.filled_positions(states[t].numpy(), tb.vocab))
            for t in range(len(patterns))]
    measures = routing.Routing.from_sums(sums).measures
    P = tb.max_len
    uniform = torch.ones(P, P).tril()
    uniform = (uniform / uniform.sum(-1, keepdim=True)).expand(tb.batch, 1, P, P)
    flat = [routing.measure_step([uniform], layout, routing.filled_positions(states[t].numpy(), tb.vocab))
            for t in range(len(patterns))]
    baseline = {m: np.array([f[m][0][0, 0] / max(int(f[m][1]), 1) for f in flat]) for m in MEASURE_LABELS}
    return {m: measures[m] for m in MEASURE_LABELS}, baseline


def routing_cells(tb, row=0):
    """The (query, key) cells each measure looks at in graph ``row``, for outlining a pattern."""
    lo = routing.Layout.of(tb)
    op, nd = lo.op_b == row, lo.nd_b == row
    pairs = lambda q, keys: [(int(a), int(k)) for a, ks in zip(q, keys) for k in np.atleast_1d(ks) if k >= 0]
    return {MEASURE_LABELS["operand_lookup"]: pairs(lo.op_q[op], lo.op_def[op]),
            MEASURE_LABELS["gather"]: pairs(lo.nd_q[nd], lo.nd_ops[nd]),
            MEASURE_LABELS["induction"]: pairs(lo.nd_q[nd], lo.nd_defs[nd])}


def top_heads(score, k=3):
    """The k heads with the largest mean score over steps: [(layer, head, score)]."""
    mean = np.nanmean(score, 0)  # [layer, head]
    order = np.argsort(-np.nan_to_num(mean, nan=-1).ravel())[:k]
    return [(int(i) // mean.shape[1], int(i) % mean.shape[1], float(mean.ravel()[i])) for i in order]
'''

ROUTING = [
    md("""
    # 2 · Attention routing across steps, through the TransformerLens cache
    """ + ROUTING_INTRO + """
    This notebook reads the patterns from a **TransformerLens** cache; notebook 5 does the same with
    nnsight.
    """),
    code(SETUP, """
    import numpy as np
    import workbench as wb
    from workbench.hooks import hooked, ablate_heads
    from workbench.plots import notebook_figures as nf
    from workbench.task.text import problems_to_graphs
    """),
    md("""
    ## Every step has its own hook points

    The blocks' weights are shared across steps, but a TransformerLens hook point inside a shared
    block would fire once per step, and `run_with_cache` would keep only its last call.
    `hooked(model)` therefore gives every step its own (parameter-free) hook points:
    `loop.{t}.blocks.{l}.attn.hook_pattern` is layer l's attention pattern at step t. We cache only
    the patterns, for a fixed number of steps (a few past the deepest variable).
    """),
    code(BUDGET, """

    model = wb.load_model("default")
    hm = hooked(model)
    problem = wb.parse_problem(text, model.task)
    tb = hm.to_token_batch(problem)  # the tokens, plus where every variable and operand stands
    tokens = hm.to_tokens(problem)   # [batch, pos, factor]
    n_steps = max(problem.depth.values()) + 2
    logits, cache = hm.run_with_cache(tokens, names_filter=lambda name: name.endswith(("attn.hook_pattern", "hook_state")),
                                      n_steps=n_steps)
    print(cache, "e.g.", list(cache)[:2])
    patterns = cache.stack_layers("attn.hook_pattern")  # [step, layer, batch, head, query, key]
    states = cache.states()  # [step, batch, pos, factor]: the state each step read
    print("patterns:", tuple(patterns.shape), "= [step, layer, batch, head, query, key]")
    """),
    md("""
    ## Where the operands stand

    Each equation is laid out as `operand + operand ... = result SEP` (a leaf as `constant = result
    SEP`). For every equation with operands, the result position (`tb.rhs_pos`), its own operand
    tokens (`tb.operand_pos`) and its operands' defining positions (their `rhs_pos`) are the three
    sets of positions the routing scores compare. Token labels use your names again.
    """),
    code("""
    _, (mapping,) = problems_to_graphs([problem], model.task, seed=0)
    labels = nf.token_labels(tb.tokens[0], model.vocab, {index: name for name, index in mapping.items()})
    parents = tb.graphs.parents[0]
    for n, name in enumerate(problem.names):
        operands = [int(p) for p in parents[n] if p >= 0]
        if not operands:
            continue
        own = [int(p) for p in tb.operand_pos[0, n] if p >= 0]
        defined = [int(tb.rhs_pos[0, p]) for p in operands]
        print(f"{name:>9}: result at {tb.rhs_pos[0, n]:>2}; own operand tokens at {own}; "
              f"operands defined at {defined} ({', '.join(problem.names[p] for p in operands)})")
    print()
    print(" ".join(f"{i}:{label}" for i, label in enumerate(labels)))
    """),
    md("""
    ## Lookup, gather and induction scores, per head and step

    `workbench.analysis.routing` holds the one definition of these measures (the app and the probe
    scripts use the same): from each **operand token** onto its variable's defining position
    (lookup), and from each **result position** onto its own operand tokens (gather) and onto its
    parents' defining positions (induction), counting only queries whose source the step's input
    already holds. The helpers below only index the cache and call it.
    """),
    code(ROUTING_MASKS, """

    scores, uniform = routing_scores(patterns, states, tb)
    print("under uniform causal attention:", {m: round(float(np.nanmean(v)), 2) for m, v in uniform.items()})
    nf.routing_figure({MEASURE_LABELS[m]: v for m, v in scores.items()},
                      baseline={MEASURE_LABELS[m]: v for m, v in uniform.items()},
                      title="Attention routing, the budget problem")
    """),
    md("""
    **What to look for.** The paper's circuit shows as layer-0 gather heads (the result position reads
    its operand names by slot) and layer-1 induction heads. The shipped `default` was trained with an
    auxiliary loss that asks every operand token to hold its value after block 0, and it runs another
    circuit: layer-0 heads **look each value up at the operand token**, and layer-1 heads **gather**
    the looked-up values into the result position by slot; induction stays near its uniform level. A
    row that keeps its colour across steps is a head doing the same job at every step. The heads that
    score highest on this problem, averaged over the steps:
    """),
    code("""
    for m, score in scores.items():
        print(f"{m:>15}:", ", ".join(f"L{l}.H{h} {s:.2f}" for l, h, s in top_heads(score)))
    """),
    md("""
    ## One head at one step

    The full pattern of the strongest lookup head at the last cached step, with the cells each measure
    reads outlined. The lookup head's mass should sit on the (operand token, definition) cells. Hover
    for the exact weights.
    """),
    code("""
    highlight = routing_cells(tb)
    l, h, _ = top_heads(scores["operand_lookup"], 1)[0]
    t = n_steps - 1
    nf.attention_figure(patterns[t, l, 0, h].numpy(), labels, highlight=highlight,
                        title=f"L{l}.H{h} at step {t} (top lookup head)")
    """),
    code("""
    l, h, _ = top_heads(scores["gather"], 1)[0]
    nf.attention_figure(patterns[t, l, 0, h].numpy(), labels, highlight=highlight,
                        title=f"L{l}.H{h} at step {t} (top gather head)")
    """),
    md("""
    ## The same over many graphs

    One problem has a handful of equations; the averages below come from 32 random graphs of 16
    nodes. A list of problems, `Graphs` or a `TokenBatch` go into the same calls and are padded
    together (attention is causal, so padding at the end never reaches a real query).
    """),
    code("""
    graphs = wb.sample_graphs(16, 32, rng=np.random.default_rng(0), task=model.task)
    tb_many = hm.to_token_batch(graphs)
    steps_many = int(graphs.max_depth.max()) + 2
    _, cache_many = hm.run_with_cache(torch.from_numpy(tb_many.tokens).long(), lengths=torch.from_numpy(tb_many.length),
                                      names_filter=lambda name: name.endswith(("attn.hook_pattern", "hook_state")),
                                      n_steps=steps_many)
    scores_m, uniform_m = routing_scores(cache_many.stack_layers("attn.hook_pattern"), cache_many.states(), tb_many)
    nf.routing_figure({MEASURE_LABELS[m]: v for m, v in scores_m.items()},
                      baseline={MEASURE_LABELS[m]: v for m, v in uniform_m.items()},
                      title="Attention routing, 32 random graphs of 16 nodes")
    """),
    md("""
    Do the roles hold across steps? For each head, the spread (max - min over steps) of its score,
    and the head that tops each step:
    """),
    code("""
    for m, score in scores_m.items():
        flat = np.nan_to_num(score.reshape(len(score), -1), nan=-1)
        best = [f"L{i // score.shape[2]}.H{i % score.shape[2]}" for i in flat.argmax(1)]
        spread = np.nanmax(np.nanmax(score, 0) - np.nanmin(score, 0))
        print(f"{m:>15}: top head per step {best}; largest spread of a head across steps {spread:.2f}")
    """),
    md("""
    ## Head roles, by slot, with their causal check

    `routing.run` turns the measures into head roles (`lookup`, `gather` with the operand slot it
    serves, `induction`, `other`; one threshold, `routing.ROLE_THRESHOLD`), and checks every role
    causally: each head ablated alone at each step, each role's heads ablated together, and the
    lookup heads ablated only at the operand tokens (if the next layer reads what they write there,
    that alone breaks the step). A role whose ablation costs nothing is reported "attends, not used".
    Its figures, on 32 random graphs:
    """),
    code("""
    from workbench.analysis import routing
    from workbench.plots.analysis import to_plotly

    routing_results, routing_summary = routing.run(model, n_nodes=16, count=32, seed=0)
    for key, value in routing_summary.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    for fig in routing.figures({"results": routing_results}):
        to_plotly(fig).show()
    """),
    md("""
    ## Attention is not yet use: ablate the heads

    High attention says where a head reads, not that the model needs what it reads. `ablate_heads`
    replaces the chosen heads' outputs (here with their mean, at every step) and reruns the loop. If
    the top lookup heads carry the values, ablating them should cost far more accuracy than
    ablating as many heads at random.
    """),
    code("""
    top = [(l, h) for l, h, _ in top_heads(scores_m["operand_lookup"], 2)]
    rng = np.random.default_rng(1)
    others = [(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads) if (l, h) not in top]
    random_heads = [others[i] for i in rng.choice(len(others), size=len(top), replace=False)]
    for label, heads in [("top lookup heads", top), ("random heads", random_heads)]:
        ab = ablate_heads(model, graphs, heads, mode="mean")
        print(f"{label} {heads}: variables right {100 * ab.clean.node_accuracy()[-1]:.1f}% -> "
              f"{100 * ab.ablated.node_accuracy()[-1]:.1f}%")
    """),
    md("""
    ## Fan-out: the name lookup among look-alikes

    Every operand occurrence finds its variable's **defining position** by name, and every earlier
    *use* of the same name is an EMPTY token that matches the name too. When one variable is read by
    dozens of equations, a lookup head's softmax mass can drown among those look-alikes. The shipped
    model shows it; `models/default/run/after-fanout` (trained on with hubs of at most 12 readers and a
    tempered first layer, see the card's notes 11-14) holds more mass on the definition.
    `fanout.measure_lookup` runs one teacher-forced step on the solved state (every definition already
    holds its value) and measures, per operand occurrence, the lookup heads' mass on the definition and
    whether block 0 reads the right value there, against the number of earlier uses of the name.
    Full write-up with the numbers: `docs/fanout.md`.
    """),
    code("""
    from workbench.analysis import fanout
    from workbench.model.checkpoint import models_dir
    from workbench.task.families import PRESETS, sample_family

    after = wb.load_model(models_dir() / "default" / "run" / "after-fanout")
    hubs = sample_family("hub", 64, 6, rng=np.random.default_rng(0), task=model.task)  # 2 variables, ~26 readers each
    curves = {name: fanout.measure_lookup(m, hubs) for name, m in [("default", model), ("after the fan-out phases", after)]}
    for name, res in curves.items():
        print(name, "lookup heads", res.lookup_heads)
        for row in res.binned():
            print(f"  {row['bin']:>6} earlier uses: mass {row['lookup_mass']:.2f}, read right {100 * row['readout_acc']:.0f}%")
    fanout.figure(curves).show()
    """),
    md("""
    **The causal test.** If the failure is mass spread over look-alikes, sharpening the first layer's
    content scores at inference alone (no training) must repair it. The preset below is the chain
    `v_i = v_(i-1) + w` of 60 links, one click away on the app's Problem page too.
    """),
    code("""
    chain = PRESETS["fan-out: a 60-link chain that re-reads one variable (v_i = v_(i-1) + w)"]
    for factor in (1.0, 1.5):
        with fanout.sharpened(model, factor):
            sol = wb.solve(model, chain)
        print(f"default, first layer sharpened x{factor}: complete={sol.complete}, "
              f"{len(sol.unsolved)} unsolved, converged={sol.converged}")
    sol = wb.solve(after, chain)
    print(f"after the fan-out phases: complete={sol.complete}, {len(sol.unsolved)} unsolved")
    """),
    md("""
    ## One step as a standard TransformerLens model

    Everything above read the loop cache by our `loop.{t}.…` names. `hm.at_step(t)` makes step t a
    model that TransformerLens code takes as one of its own: hook names `blocks.{l}.attn.hook_pattern`,
    a `cfg` with TransformerLens's fields (`n_ctx`, `d_vocab`, `d_mlp`, `act_fn`, ...), weights stacked
    as TransformerLens stacks them (`W_Q [layer, head, d_model, d_head]`), `to_str_tokens` with your
    names, and a `run_with_cache` that returns a real `ActivationCache`. Its forward runs the loop from
    the input and returns step t's logits. How the looped model maps onto a standard one:

    - a position carries four codes; `to_tokens` packs them into one id per position (`[batch, pos]`,
      where TransformerLens reads the positions from);
    - `W_E`, `W_U` and the logits are those of one **factor**, the value head by default
      (`hm.at_step(t, factor="syntax")` for another), with the LayerNorms folded into the weights
      (`normalization_type="LNPre"`), as TransformerLens's `from_pretrained` does;
    - what is genuinely different: the weights are the same at every step, and step t reads the state
      the earlier steps wrote through the discrete bottleneck, so attributions and gradients stop at
      step t's input.

    We take the step that computes `total` (depth 1: step 1 on the schedule).
    """),
    code("""
    view = hm.at_step(problem.depth["total"])
    print(view)
    print({field: getattr(view.cfg, field) for field in ("n_layers", "n_heads", "d_model", "d_head", "d_mlp", "d_vocab",
                                                         "n_ctx", "act_fn", "normalization_type")})
    print("W_Q", tuple(view.W_Q.shape), " W_O", tuple(view.W_O.shape), " W_in", tuple(view.W_in.shape),
          " W_U", tuple(view.W_U.shape))
    view_tokens = view.to_tokens(problem)  # [batch, pos]: one packed id per position
    print(view.to_string(view_tokens))
    step_logits, step_cache = view.run_with_cache(view_tokens)
    print(type(step_cache).__name__, "e.g.", list(step_cache.keys())[:3])
    str_tokens = view.to_str_tokens(step_cache["hook_state"])  # the state this step reads, with your names
    print(" ".join(str_tokens))
    """),
    md("""
    ### Direct logit attribution through the value head

    At `total`'s defining position, how much does each component of the residual stream push the
    logit of the true value? `decompose_resid` and `logit_attrs` are TransformerLens's own; the
    components add up (with `b_U`) to the logit itself, which the cell checks.
    """),
    code("""
    node = problem.names.index("total")
    pos, true_value = int(tb.rhs_pos[0, node]), int(tb.graphs.value[0, node])
    print(f"position {pos} ({str_tokens[pos]}): step {view.step} writes {step_logits[0, pos].argmax().item()}, "
          f"true value {true_value}")
    resid, components = step_cache.decompose_resid(return_labels=True, pos_slice=pos)  # [component, batch, d_model]
    attrs = step_cache.logit_attrs(resid, tokens=true_value, pos_slice=pos)[:, 0]      # [component]
    for label, a in zip(components, attrs.tolist()):
        print(f"{label:>11}: {a:+7.2f}")
    print(f"sum + b_U = {attrs.sum().item() + view.b_U[true_value].item():.3f}; "
          f"the logit = {step_logits[0, pos, true_value].item():.3f}")
    heads, head_labels = step_cache.stack_head_results(return_labels=True, pos_slice=pos)
    head_attrs = step_cache.logit_attrs(heads, tokens=true_value, pos_slice=pos)[:, 0]
    top = head_attrs.argsort(descending=True)[:3].tolist()
    print("heads writing it most directly:", ", ".join(f"{head_labels[i]} {head_attrs[i]:+.2f}" for i in top))
    """),
    md("""
    ### Activation patching with `transformer_lens.patching`

    A corrupted problem gives `price` 12 instead of 17, so `total` is 21 instead of 3. TransformerLens's
    `get_act_patch_resid_pre` patches the clean residual stream into the corrupted run at every
    (layer, position) of this step and measures the logit difference (clean value minus corrupted
    value) at `total`. A cell that reaches the clean difference carries the whole answer there.
    """),
    code("""
    import plotly.graph_objects as go
    from transformer_lens import patching

    corrupted = view.to_tokens(wb.parse_problem(text.replace("17", "12"), model.task))
    corrupted_value = (12 + 9) % model.task.modulus
    metric = lambda logits: logits[0, pos, true_value] - logits[0, pos, corrupted_value]
    with torch.no_grad():
        grid = patching.get_act_patch_resid_pre(view, corrupted, step_cache, metric)  # [layer, pos]
        clean_diff, corrupted_diff = metric(step_logits).item(), metric(view(corrupted)).item()
    print(f"logit difference: clean {clean_diff:.1f}, corrupted {corrupted_diff:.1f}")
    for layer, p in (grid > 0.9 * clean_diff).nonzero().tolist():
        print(f"  patching L{layer} resid_pre at {p}:{str_tokens[p]} gives {grid[layer, p]:.1f}")
    ticks = [f"{i}:{label}" for i, label in enumerate(str_tokens)]
    go.Figure(go.Heatmap(z=grid.numpy(), x=ticks, y=[f"L{l} resid_pre" for l in range(view.cfg.n_layers)],
                         colorscale="RdBu", zmid=0),
              layout={"title": f"Clean residual patched into the corrupted run at step {view.step}",
                      "xaxis": {"type": "category", "tickfont": {"size": 8}}, "height": 300, "template": "plotly_white"})
    """),
    md("""
    **What to look for.** The restoring cells trace the lookup: at layer 0 the value still sits at
    `price`'s defining position; at layer 1 it has been fetched into `price`'s operand token in the
    equation of `total`, from where the last layer reads it.

    Viewers that read TransformerLens names work on the cache unchanged. CircuitsVis's attention view,
    when installed (it loads its widget from a CDN), takes `step_cache["pattern", layer]` as it is;
    without it, the workbench's own figure shows the same pattern of the head above.
    """),
    code("""
    layer, head = divmod(top[0], view.cfg.n_heads)
    try:
        import circuitsvis as cv
        display(cv.attention.attention_patterns(tokens=str_tokens, attention=step_cache["pattern", layer][0]))
    except ImportError:
        print("circuitsvis is not installed here (`.venv/bin/pip install circuitsvis`); the same pattern:")
        nf.attention_figure(step_cache["pattern", layer][0, head].numpy(), str_tokens,
                            title=f"L{layer}.H{head} at step {view.step}, from the ActivationCache").show()
    """),
]


# --------------------------------------------------------------------------------------------- 5
NNSIGHT = [
    md("""
    # 5 · Attention routing across steps, through nnsight

    The same analysis as notebook 2 (copy and induction scores per head and step), with the patterns
    read by **nnsight** instead of a TransformerLens cache.
    """ + ROUTING_INTRO + """
    ### nnsight and a loop

    In a plain nnsight trace, a module that runs once per step is one envoy called many times, which
    takes `tracer.iter[...]` and has traps (reads must follow the call order; code after an unbounded
    iteration never runs). `nnsight_model(model)` avoids them: every step has its own hook modules,
    so step t, layer l is simply `nm.loop[t].blocks[l].attn.hook_pattern`, called once per run. Two
    rules remain: read modules in forward order (step by step, layer by layer), and run the loop for
    a fixed number of steps (`n_steps=`) so that every step you read is reached. nnsight is not
    thread-safe: a raw trace holds `model_lock()`.
    """),
    code(SETUP, """
    import nnsight
    import numpy as np
    import workbench as wb
    from workbench.hooks import hook_name, hooked, model_lock, nnsight_model
    from workbench.plots import notebook_figures as nf
    from workbench.task.text import problems_to_graphs
    """),
    code(BUDGET, """

    model = wb.load_model("default")
    nm = nnsight_model(model)
    problem = wb.parse_problem(text, model.task)
    tb = nm.hooked.to_token_batch(problem)
    tokens = nm.hooked.to_tokens(problem)
    n_steps = max(problem.depth.values()) + 2
    L = model.cfg.n_layers
    print(nm)
    """),
    md("""
    ## A raw trace

    Inside `nm.trace(...)`, `.output` of an envoy is the activation of that run. Only what is saved
    outlives the trace: `envoy.output.save()` for one value, or a container made with `nnsight.save`
    that the body fills. The loops below visit step 0 layer 0, step 0 layer 1, step 1 layer 0, ...:
    forward order.
    """),
    code("""
    with model_lock(), nm.trace(tokens, n_steps=n_steps):
        saved = nnsight.save([])  # a saved container: what is appended inside survives the trace
        for t in range(n_steps):
            for l in range(L):
                saved.append(nm.loop[t].blocks[l].attn.hook_pattern.output)
    patterns = torch.stack(list(saved)).unflatten(0, (n_steps, L))  # [step, layer, batch, head, query, key]
    print("patterns:", tuple(patterns.shape), "= [step, layer, batch, head, query, key]")
    """),
    md("""
    The helper `nm.save(tokens, names)` does the same bookkeeping for a list of hook names (sorted
    into forward order for you) and returns the same `LoopCache` as TransformerLens. The hook points
    are the same modules, so the readings agree: exactly between the two nnsight runs, and up to float
    rounding (around 1e-6) with a TransformerLens cache of the patterns alone. (An nnsight trace passes
    every site of every step through its hook point, which makes attention compute its output the
    explicit way everywhere; a TransformerLens run does that only at the hooked sites. Caching every
    site in TransformerLens gives bit-identical numbers.)
    """),
    code("""
    names = [hook_name(t, "attn.hook_pattern", layer=l) for t in range(n_steps) for l in range(L)]
    _, nn_cache = nm.save(tokens, names, n_steps=n_steps)
    _, tl_cache = hooked(model).run_with_cache(tokens, names_filter=names, n_steps=n_steps)
    print("raw trace == nm.save:", torch.equal(patterns, nn_cache.stack_layers("attn.hook_pattern")))
    difference = (patterns - tl_cache.stack_layers("attn.hook_pattern")).abs().max().item()
    print(f"nnsight vs TransformerLens: largest difference {difference:.1e}")
    assert difference < 1e-4
    """),
    md("""
    ## Lookup, gather and induction scores, per head and step

    The measures are the library's (`workbench.analysis.routing`, as in notebook 2 and the app); they
    need the state each step read, which one more cached site gives.
    """),
    code(ROUTING_MASKS, """

    _, state_cache = nm.save(tokens, [hook_name(t, "hook_state") for t in range(n_steps)], n_steps=n_steps)
    scores, uniform = routing_scores(patterns, state_cache.states(), tb)
    print("under uniform causal attention:", {m: round(float(np.nanmean(v)), 2) for m, v in uniform.items()})
    nf.routing_figure({MEASURE_LABELS[m]: v for m, v in scores.items()},
                      baseline={MEASURE_LABELS[m]: v for m, v in uniform.items()},
                      title="Attention routing (nnsight), the budget problem")
    """),
    md("""
    **What to look for** is as in notebook 2: the shipped `default` looks values up at the operand
    tokens in layer 0 and gathers them by slot in layer 1, and its rows keep their colour across
    steps. The strongest lookup head's pattern at the last step, with the cells each measure reads
    outlined:
    """),
    code("""
    l, h, top_score = top_heads(scores["operand_lookup"], 1)[0]
    print(f"top lookup head: L{l}.H{h}, mean score {top_score:.2f}")
    _, (mapping,) = problems_to_graphs([problem], model.task, seed=0)
    labels = nf.token_labels(tb.tokens[0], model.vocab, {index: name for name, index in mapping.items()})
    nf.attention_figure(patterns[-1, l, 0, h].numpy(), labels, highlight=routing_cells(tb),
                        title=f"L{l}.H{h} at step {n_steps - 1} (top lookup head)")
    """),
    md("""
    ## Writing through nnsight: silence a head at every step

    nnsight writes as easily as it reads: assigning to `.output` replaces the activation for the rest
    of the run. `nm.run(tokens, set={name: fn})` applies `fn` to the named activations (in forward
    order) and returns the run's output. Below, the top lookup head's output (`hook_z`, [batch,
    pos, head, d_head]) is zeroed at every step of 32 random graphs; we compare the final values with
    the clean run, and with the same edit made by a TransformerLens hook (they must agree).
    """),
    code("""
    from workbench.hooks.decoded import node_values

    graphs = wb.sample_graphs(16, 32, rng=np.random.default_rng(0), task=model.task)
    tb_many = nm.hooked.to_token_batch(graphs)
    tok_many, len_many = torch.from_numpy(tb_many.tokens).long(), torch.from_numpy(tb_many.length)
    steps_many = int(graphs.max_depth.max()) + 2
    truth = torch.from_numpy(graphs.value)
    valid = torch.from_numpy(graphs.valid)

    def silence(z):
        z = z.clone()
        z[:, :, h] = 0
        return z

    z_names = [hook_name(t, "attn.hook_z", layer=l) for t in range(steps_many)]
    runs = {
        "clean": nm.run(tok_many, lengths=len_many, n_steps=steps_many, return_type="output")[0],
        "nnsight edit": nm.run(tok_many, lengths=len_many, set={n: silence for n in z_names}, n_steps=steps_many,
                               return_type="output")[0],
        "TransformerLens edit": hooked(model).run_with_hooks(tok_many, lengths=len_many, n_steps=steps_many,
                                                             return_type="output",
                                                             fwd_hooks=[(n, lambda z, hook: silence(z)) for n in z_names]),
    }
    for label, out in runs.items():
        values = node_values(out.final.cpu(), tb_many.rhs_pos)
        right = ((values == truth) & valid).sum() / valid.sum()
        print(f"{label:>21}: {100 * right:.1f}% of variables right after {steps_many} steps")
    print("nnsight edit == TransformerLens edit:", torch.equal(runs["nnsight edit"].final, runs["TransformerLens edit"].final))
    """),
    md("""
    ## Two invokes in one trace: clean versus corrupted at one step

    nnsight's standard form of activation patching puts the clean and the corrupted input into one
    trace, one `tracer.invoke` each: their rows run as one batch (right-padded, so positions counted
    from the left keep their meaning) and each invoke sees only its own rows. A barrier hands the clean
    activation from the first invoke to the second. The corrupted problem gives `price` 12 instead of
    17; at the step that computes `total`, we patch the clean residual stream entering layer 0 at
    `price`'s defining position into the corrupted run. Read the activation, then meet at the barrier,
    before anything later in the run: a block that reads the output first would pass the module.
    """),
    code("""
    corrupted = nm.hooked.to_tokens(wb.parse_problem(text.replace("17", "12"), model.task))
    step = problem.depth["total"]
    price, total = (int(tb.rhs_pos[0, problem.names.index(name)]) for name in ("price", "total"))
    with model_lock(), nm.trace(n_steps=step + 1) as tracer:
        barrier = tracer.barrier(2)
        with tracer.invoke(tokens):
            clean_resid = nm.loop[step].blocks[0].hook_resid_pre.output[:, price]
            barrier()
            clean_logits = nm.output[3].save()  # the value head's logits of the last step
        with tracer.invoke(corrupted):
            barrier()
            nm.loop[step].blocks[0].hook_resid_pre.output[:, price] = clean_resid
            patched_logits = nm.output[3].save()
    with model_lock(), nm.trace(corrupted, n_steps=step + 1):
        corrupted_logits = nm.output[3].save()
    for label, lg in [("clean", clean_logits), ("corrupted", corrupted_logits), ("patched", patched_logits)]:
        print(f"{label:>9}: step {step} writes total = {lg[0, total].argmax().item()}")
    """),
    md("""
    ## nnsight's iteration API, mapped onto steps

    Besides the per-step modules, `nm.blocks[l]...` (no `loop[t]`) is one module called once per
    step: what a shared block looks like to nnsight. Inside `tracer.iter[...]` iteration i is step i,
    as for any looped or generating model (outside an iteration it means step 0). A per-step module
    read inside an iteration past the first raises an error that names this path.
    """),
    code("""
    with model_lock(), nm.trace(tokens, n_steps=n_steps) as tracer:
        per_iteration = nnsight.save([])
        for _ in tracer.iter[:n_steps]:  # bounded: code after an open iter[:] would not run
            per_iteration.append(nm.blocks[1].attn.hook_pattern.output)
    print("tracer.iter[i] reads step i:", torch.equal(torch.stack(list(per_iteration)), patterns[:, 1]))
    """),
    md("""
    ## Gradients, when asked

    `nm.trace(..., grad=True)` keeps autograd, and nnsight's usual `with loss.backward():` reads
    gradients. Below, the gradient of `total`'s true-value logit with respect to the residual stream
    entering step 1's first layer: its norm per position says where the answer is read from. Only step
    1's activations get a gradient: the bottleneck's argmax stands between two steps.
    """),
    code("""
    true_total = int(tb.graphs.value[0, problem.names.index("total")])
    with model_lock(), nm.trace(tokens, n_steps=step + 1, grad=True):
        resid = nm.loop[step].blocks[0].hook_resid_pre.output
        logits = nm.output[3]
        with logits[0, total, true_total].backward():
            grad = resid.grad.save()
    norm = grad[0].norm(dim=-1)
    top_positions = norm.argsort(descending=True)[:4].tolist()
    print("largest gradients at", ", ".join(f"{p}:{labels[p]} ({norm[p]:.2f})" for p in top_positions))
    """),
]


# --------------------------------------------------------------------------------------------- 3
PROBES = [
    md("""
    # 3 · Probes and the bottleneck lens: what the residual stream knows before the bottleneck

    The discrete state shows what a step *wrote*. Inside a step, the residual stream may already hold
    more: the value of a variable computed one layer early, the identity of each operand copied to
    the result position, whether a value is available yet. Two tools read it:
    - **linear probes** (scikit-learn, on the residual stream at one step and one residual point) ask
      whether a quantity is *linearly decodable* there. Train and test are split **by graph**, never
      by token (positions of one graph share context), and each task has **control tasks**: after
      Hewitt & Liang, random labels that a probe can only learn by memorizing variable names, and
      labels shuffled within each graph. *Selectivity* = task accuracy - control accuracy. The
      residual stream carries every token's name, so the name control can score high; a quantity is
      convincingly encoded where the task beats its controls, not merely where its accuracy is high;
    - the **bottleneck lens** pushes an intermediate residual through the model's own final LayerNorm
      and factor heads: *what would the bottleneck write if the step ended here?* No training, no
      control: it asks the model's own decoder, and at the last residual point it is the bottleneck.

    Both read the **recurrence** one step at a time: with **algorithmic supervision**, a variable of
    depth d should become decodable at step d (the step that computes it) and stay decodable, because
    the bottleneck writes it into the state. The residual points of a 2-layer model are `L0.pre` (the
    embedded state), then `Ll.mid` (after attention) and `Ll.post` (after the MLP) of each layer.

    The analyses are the library's (`workbench.analysis`, the same code as the `probes/` scripts and
    the app); the runs here are small (64 graphs) so the notebook stays quick. Decodable is not the
    same as used: confirm a finding by intervening (notebooks 2, 4 and 5 ablate heads and overwrite
    values).
    """),
    code(SETUP, """
    import numpy as np
    import workbench as wb
    from workbench.analysis import lens, probes
    from workbench.hooks import hook_name, hooked
    from workbench.plots.analysis import to_plotly
    from workbench.task.vocab import F_VALUE
    """),
    md("""
    ## Probes, with controls

    Three tasks: a variable's **value** at its defining position (`value@rhs`), the same value read at
    a later **operand** occurrence (`value@operand`: has the value been fetched into the equation that
    uses it?), and whether the value is **computed** yet in the state the step reads (`computed@rhs`).
    `probes.run` samples the graphs, gathers the residual stream at every step and point, and fits one
    probe per task, step and point, plus its controls. Chance for a value is about 1/p; the
    majority-class rate is in the summary.
    """),
    code("""
    model = wb.load_model("default")
    results, summary = probes.run(model, n_nodes=16, count=64, tasks=["value@rhs", "value@operand", "computed@rhs"], seed=0)
    for key, value in summary.items():
        print(f"{key:>40}: {value:.2f}" if isinstance(value, float) else f"{key:>40}: {value}")
    """),
    md("""
    The figures below: accuracy per step (rows) and residual point (columns) for each task; the same
    as selectivity against each control; the curves after the last layer; and the value probe by
    depth. **What to look for:** on the schedule, the `value@rhs` curve of depth d rises at step d,
    and `value@operand` rises once the operand's value exists (the fetch that layer-2 attention does
    in the paper's circuit).
    """),
    code("""
    for fig in probes.figures({"results": results}):
        to_plotly(fig).show()
    """),
    md("""
    ## The bottleneck lens

    `lens.run` applies the decoder at every residual point of every step. The first figure checks the
    lens against what each step actually wrote (at the last point it must agree everywhere); the
    next asks where a variable's true value first appears, overall and by depth; the last follows the
    drift of the final hidden state across steps (a fixed point shows as no change).
    """),
    code("""
    lens_results, lens_summary = lens.run(model, n_nodes=16, count=64, seed=0)
    for key, value in lens_summary.items():
        shown = [round(v, 2) for v in value] if isinstance(value, list) else (round(value, 3) if isinstance(value, float) else value)
        print(f"{key:>58}: {shown}")
    for fig in lens.figures({"results": lens_results}):
        to_plotly(fig).show()
    """),
    md("""
    ### The lens on one problem

    The same decoder, by hand, on the budget problem of notebook 1: for every variable, the value the
    lens reads at its defining position at each residual point of the step that should compute it
    (step = depth), beside the true value (`?`: empty). `lens.lens_logits` is the model's `ln_final`
    followed by its factor heads.
    """),
    code(BUDGET, """

    hm = hooked(model)
    problem = wb.parse_problem(text, model.task)
    tb = hm.to_token_batch(problem)
    n_steps = max(problem.depth.values()) + 1
    points = [("hook_resid_pre", 0)] + [(site, l) for l in range(model.cfg.n_layers) for site in ("hook_resid_mid", "hook_resid_post")]
    names = [hook_name(t, site, layer=l) for t in range(n_steps) for site, l in points]
    _, cache = hm.run_with_cache(hm.to_tokens(problem), names_filter=names, n_steps=n_steps)
    truth = tb.graphs.value[0]
    show = lambda v: "?" if v == model.vocab.empty else str(v)
    print(f"{'variable':>9} {'depth':>5} {'true':>4}   " + " ".join(f"{'L%d.%s' % (l, site.split('_')[-1]):>7}" for site, l in points))
    for n, name in enumerate(problem.names):
        d, pos = problem.depth[name], int(tb.rhs_pos[0, n])
        reads = [lens.lens_logits(model, cache[hook_name(d, site, layer=l)][0, pos])[F_VALUE].argmax().item()
                 for site, l in points]
        print(f"{name:>9} {d:>5} {truth[n]:>4}   " + " ".join(f"{show(v):>7}" for v in reads))
    """),
]


# --------------------------------------------------------------------------------------------- 4
CORRECTION = [
    md("""
    # 4 · Error correction: inject an error and watch the repair

    A looped model reads its own output. One wrong value written at step t is read at step t+1 and can
    spread to every variable computed from it: without a way to notice it, errors compound with the
    number of steps, which is what limits plain looped models on deep graphs. The paper's remedy is
    **error-correction training**: during training some values in the state a step reads are
    replaced by wrong ones, and the step is still asked for the correct state, so the model learns to
    recompute a value from its equation instead of trusting what the state says.

    The **discrete bottleneck** makes this easy to test: an error is one wrong token in the state, so
    we can write it ourselves. `inject_corruption(model, problems, step, ...)` runs the problems once
    clean, then again with chosen (or random) variables overwritten in the state that `step` reads,
    continues until nothing changes, and reports what was repaired and when.

    We compare the full model with the **no-error-correction ablation** (the same recipe, trained
    without corrupted states) when `models/no-error-correction` exists.
    """),
    code(SETUP, """
    import numpy as np
    import workbench as wb
    from workbench.hooks.interventions import inject_corruption, trajectory
    from workbench.plots import notebook_figures as nf
    """),
    code("""
    models = {"default": wb.load_model("default")}
    if "no-error-correction" in wb.available_models():
        models["no-error-correction"] = wb.load_model("no-error-correction")
    else:
        print("models/no-error-correction does not exist (yet): this notebook shows the default model only. "
              "Once the ablation is trained and exported there, rerun it to see both side by side.")
    for name, m in models.items():
        training = m.meta.get("training", {})
        print(f"{name}: error-correction probability {m.cfg.corruption_prob}, training step "
              f"{training.get('steps')} of {training.get('total_steps')} (phase {training.get('last_phase')!r})")
    """),
    md("""
    ## One problem, one error

    We overwrite `total` (depth 1) with a wrong value in the state that step 2 reads. On the schedule,
    `total` was written at step 1, and step 2 computes `net = total + discount` from it: the error
    reaches `net` in the same step that has a chance to repair `total`. A model that recomputes
    every value from its equation repairs `total` at step 2 and `net` at step 3; a model that trusts
    its state keeps both wrong.

    In the grids, the X marks the injected cell (the state step 2 reads). Compare with the clean run.
    """),
    code(BUDGET, """

    model = models["default"]
    problem = wb.parse_problem(text, model.task)
    step, node = 2, "total"
    n_after = max(problem.depth.values()) + 3
    for name, m in models.items():
        truth = trajectory(m, problem, n_steps=1).truth[0, problem.names.index(node)].item()
        inj = inject_corruption(m, problem, step, nodes=[[node]], values=(truth + 5) % m.task.modulus,
                                max_steps=step + n_after)
        repair = inj.repair_step[0, problem.names.index(node)].item()
        print(f"{name}: wrote {inj.injected[0].max().item()} into {node} (true {truth}); "
              f"repaired {'at step ' + str(repair) if repair >= 0 else 'never'}; "
              f"ended in the clean run's final state: {bool(inj.same_as_clean[0])}; "
              f"extra steps: {inj.delay[0].item()}")
        nf.state_grid(inj.clean, names=problem.names, title=f"{name}: clean run").show()
        nf.state_grid(inj.corrupted, names=problem.names, mark=(inj.mask[0], step),
                      title=f"{name}: {node} overwritten in the state step {step} reads").show()
    """),
    md("""
    ## Many problems: recovery rates

    Now 128 random graphs of 16 nodes; in each, one variable that the clean run had already got right
    by then is set to a random wrong value in the state step 3 reads. The left panel follows the
    injected variables: the share that holds its true value again, by steps after the injection
    (0 = the output of the step that read the error). The right panel follows whole graphs, against
    the share the same model solves without the error (dotted). A model that repairs in one step
    reaches its clean level at 0; a model without error correction may never reach it.
    """),
    code("""
    graphs = wb.sample_graphs(16, 128, rng=np.random.default_rng(0), task=model.task)
    step = 3
    cap = step + int(graphs.max_depth.max()) + 6  # enough to repair and settle; keeps a model that never settles cheap
    injections = {name: inject_corruption(m, graphs, step, count=1, seed=0, max_steps=cap) for name, m in models.items()}
    for name, inj in injections.items():
        n = int(inj.mask.sum())
        clean_solved = inj.clean.solved.float().mean().item()
        print(f"{name}: {n} errors injected; repaired {100 * inj.repaired.sum().item() / n:.1f}%, "
              f"graphs ending in the clean final state {100 * inj.same_as_clean.float().mean():.1f}%, "
              f"graphs solved {100 * inj.recovered.float().mean():.1f}% (clean: {100 * clean_solved:.1f}%), "
              f"mean extra steps {inj.delay.float().mean():.2f}")
    nf.recovery_figure(injections)
    """),
    md("""
    **By depth.** A leaf's value is one copy of the constant in its own equation, a deep variable's
    needs its operands to be right first. The repair rate of the injected variable and how many steps
    the repair took, by the injected variable's depth:
    """),
    code("""
    for name, inj in injections.items():
        depth = inj.corrupted.depth[inj.mask]
        repaired = inj.repaired[inj.mask]
        delay = (inj.repair_step - inj.step)[inj.mask]
        print(name)
        for d in sorted(set(depth.tolist())):
            at = depth == d
            ok = repaired[at]
            took = delay[at & repaired].float()
            mean = f"{took.mean():.1f} steps after the injection" if len(took) else "-"
            print(f"  depth {d}: {int(at.sum()):>3} injected, {100 * ok.float().mean():5.1f}% repaired, {mean}")
    """),
    md("""
    **More errors at once.** Corrupting k variables per graph at the same step; the share of graphs
    that still end fully solved, against the clean run:
    """),
    code("""
    for name, m in models.items():
        rates = []
        for k in (1, 2, 4):
            inj = inject_corruption(m, graphs, step, count=k, seed=k, max_steps=cap)
            rates.append(f"k={k}: {100 * inj.recovered.float().mean():.1f}%")
        print(f"{name}: graphs solved after k errors at step {step}: " + ", ".join(rates)
              + f" (clean: {100 * inj.clean.solved.float().mean():.1f}%)")
    """),
    md("""
    ## Natural errors

    Injected errors are a controlled experiment; the model also makes its own mistakes. In ordinary
    runs we count **corrections** (a variable goes from a wrong value to its true value between two
    steps) and **new errors** (from its true value to a wrong one). Error-correction training should
    show up as corrections outnumbering new errors.
    """),
    code("""
    empty = model.vocab.empty
    for name, m in models.items():
        traj = trajectory(m, graphs, n_steps=int(graphs.max_depth.max()) + 4)
        right = traj.correct
        wrong = ~right & (traj.values != empty) & traj.node_mask
        corrections = (wrong[:-1] & right[1:]).sum().item()
        new_errors = (right[:-1] & wrong[1:]).sum().item()
        print(f"{name}: {corrections} corrections and {new_errors} new errors over {traj.n_steps} steps "
              f"of {graphs.batch} graphs; final accuracy {100 * traj.node_accuracy()[-1]:.1f}% of variables")
    """),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_attention_routing.ipynb": ROUTING,
    "03_probes_and_lens.ipynb": PROBES,
    "04_error_correction.ipynb": CORRECTION,
    "05_routing_nnsight.ipynb": NNSIGHT,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` (a key of ``NOTEBOOKS``), without outputs."""
    nb = new_notebook(cells=NOTEBOOKS[name])
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell.id = f"{Path(name).stem.split('_')[0]}-{i:02d}"  # stable ids: rebuilding changes nothing
    return nb


def main(argv: list[str]) -> None:
    for name in NOTEBOOKS:
        nbformat.write(build(name), HERE / name)
        print(f"wrote notebooks/{name}")


if __name__ == "__main__":
    main(sys.argv[1:])

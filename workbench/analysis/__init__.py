"""Analyses of looped models: probes, lens, routing, attribution, MLPs, codebook, correction, patching.

One module per idea; each analysis module has ``run(model, **options) -> (results, summary)`` (what the
``probes/`` scripts write as JSON, see ``results``) and ``figures(result) -> [Figure]`` (drawn by
``workbench.plots.analysis``):

    activations   sampled batches, chunked cached runs (free or teacher-forced), residuals gathered at node positions
    probes        linear probes (scikit-learn) with control tasks and selectivity, split by graph
                  (probing: the estimator and curves; probe_checks: is a probe used, is it above random weights)
    lens          the bottleneck lens (decode every residual point of every step), hidden-state drift
    routing       attention copy / induction scores per step, layer, head; head roles (routing_checks: ablations)
    attribution   template-equation relative-variance head attribution, head groups, OV factor amplification
    mlp           MLP contribution and ablation; 3-D Fourier analysis over Z_p^3
    codebook      code usage of the bottleneck, invalid combinations, value transitions
    correction    stepwise solved curves, halting, self-corrections, injected errors
    patching      cross-step activation patching maps
    summary       each analysis' headline numbers as a typed dataclass (labels for people, fields for code)
    results       the JSON envelope on disk; report: the results page (comparison: the paper's findings beside
                  ours); script: what probes/ scripts share

Modules load on first use (``workbench.analysis.probes`` imports scikit-learn).
"""

from __future__ import annotations

import importlib

MODULES = ("activations", "probes", "probing", "probe_checks", "lens", "routing", "routing_checks", "attribution", "mlp",
           "codebook", "correction", "patching", "summary", "results", "comparison", "report", "script")


def __getattr__(name: str):
    if name in MODULES:
        module = importlib.import_module(f"workbench.analysis.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'workbench.analysis' has no attribute {name!r}")


__all__ = list(MODULES)

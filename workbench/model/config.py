"""The model's config: architecture plus one switch per mechanism of the paper."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from workbench.errors import WorkbenchError

RECURRENCE = ("looped", "feedforward")
LATENT = ("discrete", "continuous")
SUPERVISION = ("algorithmic", "end_to_end")
CORRUPTION_STRATEGY = ("frontier", "previous", "all_filled", "onestep")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Architecture and mechanisms; saved as ``config.json["model"]`` beside the weights.

    recurrence: ``looped`` applies one weight-shared stack of ``n_layers`` blocks once per step;
        ``feedforward`` applies ``n_layers`` distinct blocks once (a single step).
    latent: ``discrete`` decodes every factor by argmax between steps and re-embeds it (the bottleneck);
        ``continuous`` feeds the final hidden state forward.
    supervision: ``algorithmic`` trains step t against the teacher state t; ``end_to_end`` trains only
        the final state (needs a continuous latent or one feedforward pass: no gradient crosses argmax).
    rel_window: distances >= rel_window - 1 share one bucket of the relative-position bias.
    rel_bias_scale: the bias is ``rel_bias_scale * rel_bias``. Adam moves each parameter by about lr per
        step, and a head needs a bias of several units to focus on one offset, so an unscaled bias
        takes thousands of steps to route (measured: +0.5 after 2,800 steps, and no copy circuit).
    embed_std: init std of the factor embeddings (None: PyTorch's N(0, 1), the reference's choice;
        a small value keeps the embeddings from drowning the attention outputs early in training).
    qk_init: ``default`` draws W_Q and W_K independently; ``mimetic`` starts W_K equal to W_Q (after
        Trockman & Kolter, "Mimetic initialization of self-attention layers", 2023), so every head
        starts out attending to positions whose tokens resemble its own: a same-name lookup exists
        at step 0 and only has to be sharpened, instead of being found from scratch.
    corruption_*: error-correction training; each training sequence is corrupted with probability
        ``corruption_prob``; each candidate value slot (chosen by ``corruption_strategy``) with
        probability ``corruption_fraction`` gets a uniformly random wrong-or-right value. ``onestep``
        (depth <= t, a quarter of the filled ones erased) trains toward the one-step map of the
        corrupted input instead of the clean teacher state; see ``workbench.training.batches``.
    role_embedding: add one learned vector to every *defining* position (the variable right after
        ``=``) before the first block. In the paper's model a definition and a use of a name embed
        alike, so the first-layer lookup tells them apart only by the value slot, and its mass on the
        one definition drowns when a name recurs dozens of times (the fan-out failure, model card of
        ``default``). The marker is read off the syntax the input already carries; it starts at zero,
        so a model fine-tuned with it computes exactly what it did before until training moves it.
    head_gain: a learned gain per attention head on its queries (one scalar per head and layer, starting at
        1): a head's sharpness as one number. Fine-tuning only these gains under a margin on the lookup
        (``Phase.lookup_attention``, ``Phase.train_only``) sharpens name and role matching together, where
        retraining the projections sharpened the lookup by role and lost the name match at large N.
    """

    n_layers: int = 2
    n_heads: int = 8
    d_model: int = 128
    d_mlp: int | None = None
    rel_window: int = 64
    rel_bias_scale: float = 10.0
    dropout: float = 0.0
    embed_std: float | None = None
    qk_init: str = "default"
    recurrence: str = "looped"
    latent: str = "discrete"
    supervision: str = "algorithmic"
    corruption_prob: float = 0.0
    corruption_fraction: float = 0.5
    corruption_strategy: str = "frontier"
    role_embedding: bool = False
    head_gain: bool = False

    def __post_init__(self) -> None:
        checks = [(self.recurrence, RECURRENCE, "recurrence"), (self.latent, LATENT, "latent"),
                  (self.supervision, SUPERVISION, "supervision"),
                  (self.corruption_strategy, CORRUPTION_STRATEGY, "corruption_strategy")]
        for value, allowed, name in checks:
            if value not in allowed:
                raise WorkbenchError(f"model {name} must be one of {list(allowed)}, got {value!r}")
        if self.n_heads < 1 or self.d_model < 1:
            raise WorkbenchError(f"n_heads and d_model must be positive, got {self.n_heads} and {self.d_model}")
        if self.qk_init not in ("default", "mimetic"):
            raise WorkbenchError(f"model qk_init must be 'default' or 'mimetic', got {self.qk_init!r}")
        if self.d_model % self.n_heads:
            raise WorkbenchError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.n_layers < 1 or self.rel_window < 1:
            raise WorkbenchError("n_layers and rel_window must be positive")
        if not (0 <= self.corruption_prob <= 1 and 0 <= self.corruption_fraction <= 1):
            raise WorkbenchError("corruption_prob and corruption_fraction must lie in [0, 1]")
        if self.supervision == "end_to_end" and self.recurrence == "looped" and self.latent == "discrete":
            raise WorkbenchError("end-to-end supervision of a looped model needs latent='continuous' "
                                 "(no gradient crosses the discrete bottleneck)")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_width(self) -> int:
        return self.d_mlp if self.d_mlp is not None else 4 * self.d_model

    @property
    def looped(self) -> bool:
        return self.recurrence == "looped"

    @property
    def hidden_crosses_steps(self) -> bool:
        """A looped continuous latent: its decoded states are not its whole recurrent state (a step can
        only be reproduced by rerunning from the input)."""
        return self.looped and self.latent == "continuous"

    @property
    def mechanisms(self) -> dict[str, str]:
        """The four mechanisms in words, for cards and ``workbench info``."""
        ec = (f"on ({self.corruption_strategy}, p={self.corruption_prob}, fraction={self.corruption_fraction})"
              if self.corruption_prob > 0 else "off")
        return {"recurrence": self.recurrence, "latent": self.latent,
                "supervision": self.supervision, "error_correction": ec}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise WorkbenchError(f"unknown model config keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

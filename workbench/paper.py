"""The paper's published numbers (arXiv 2510.14095, method-comparison figure data): % of graphs fully solved."""

from __future__ import annotations

PAPER_SIZES: tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128)

#: method label -> % fully solved at each of PAPER_SIZES (1024 graphs per N, trained at N = 32)
PAPER_ACCURACY: dict[str, tuple[float, ...]] = {
    "E2E Feedforward": (100.0, 84.6, 39.3, 11.9, 3.4, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "E2E Recurrent": (99.9, 89.4, 48.5, 17.4, 3.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "Chain-of-Thought": (99.3, 98.8, 97.3, 96.9, 94.2, 68.6, 11.6, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "Continuous LSS": (100.0, 98.8, 97.8, 94.3, 92.9, 88.6, 86.6, 83.9, 75.2, 73.0, 74.7, 62.4, 63.5, 57.1, 54.6, 54.8),
    "Discrete LSS": (100.0, 99.5, 99.5, 99.3, 99.4, 98.7, 98.7, 97.6, 98.6, 97.5, 97.7, 96.6, 95.3, 95.8, 96.3, 94.8),
    "Discrete LSS + error correction": (100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 99.95, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0),
}

#: the paper's training distribution
TRAIN_MAX_NODES = 32
TRAIN_DEPTH_CAP = 6

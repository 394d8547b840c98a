"""The one place that chooses where tensors live: ``cuda`` when available, else the CPU."""

from __future__ import annotations

import os

import torch


def default_device() -> torch.device:
    """Return ``cuda`` when a GPU is visible, else ``cpu``; ``WORKBENCH_DEVICE`` overrides both."""
    forced = os.environ.get("WORKBENCH_DEVICE")
    if forced:
        return torch.device(forced)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

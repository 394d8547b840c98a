"""Fixtures of the app tests: a models folder (the shipped default model and a tiny one), the app served
from a daemon thread, and Playwright driving Debian's Chromium (never a downloaded browser).

The app is built once per process (Dash binds page callbacks to its first app). Every app test runs
with ``WORKBENCH_MODELS`` pointing at the fixture's folder; the variable is set per test, so other
tests in the same worker see the repository's models.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: Chromium flags: a small /dev/shm in containers, and no network beyond the test server
CHROMIUM_ARGS = ["--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update",
                 "--disable-default-apps", "--disable-sync", "--no-first-run", "--metrics-recording-only"]


@pytest.fixture(scope="session")
def app_models(tmp_path_factory) -> Path:
    """``default`` (a copy of models/default) and ``tiny`` (a random 1-layer model with 128 names), plus saved results."""
    from workbench.model.checkpoint import save_model
    from workbench.model.config import ModelConfig
    from workbench.model.looped import LoopedModel
    from workbench.task.config import TaskConfig

    root = tmp_path_factory.mktemp("app-models")
    (root / "default").mkdir()
    for name in ("model.safetensors", "config.json", "robustness.json"):
        shutil.copy(REPO / "models" / "default" / name, root / "default" / name)
    (root / "default" / "run").mkdir()
    shutil.copy(REPO / "models" / "default" / "run" / "log.jsonl", root / "default" / "run" / "log.jsonl")
    torch.manual_seed(0)
    tiny = LoopedModel(ModelConfig(n_layers=1, n_heads=2, d_model=16, d_mlp=32, rel_window=8),
                       TaskConfig(modulus=23, operations=("+",), n_names=128))
    save_model(tiny, root / "tiny")
    sizes = [{"n_nodes": n, "count": 8, "graph_acc": acc, "node_acc": 0.5, "mean_iterations": 3.0} for n, acc in ((8, 0.5), (16, 0.25))]
    (root / "tiny" / "eval.json").write_text(json.dumps({"model": "tiny", "sizes": sizes}))
    (root / "tiny" / "probes").mkdir()
    (root / "tiny" / "probes" / "lens.json").write_text(json.dumps({
        "schema": "workbench-analysis/1", "analysis": "not-drawn-here", "title": "A saved lens result",
        "model": {"name": "tiny", "training": {"finished": True}}, "summary": {"best step": 3}, "results": {}}))
    return root


@pytest.fixture(autouse=True)
def app_env(app_models, monkeypatch):
    """Every app test sees the fixture's models, on the CPU."""
    monkeypatch.setenv("WORKBENCH_MODELS", str(app_models))
    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")


@pytest.fixture(scope="session")
def dash_app(app_models):
    """The app (built once per process), first showing the default model."""
    from app.app import create_app

    before = {k: os.environ.get(k) for k in ("WORKBENCH_MODELS", "WORKBENCH_DEVICE")}
    os.environ.update(WORKBENCH_MODELS=str(app_models), WORKBENCH_DEVICE="cpu")
    try:
        yield create_app("default")
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def server_url(dash_app) -> str:
    """The app served on 127.0.0.1 at a free port, from a daemon thread."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, dash_app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.access(CHROMIUM, os.X_OK):
        why = f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium fonts-liberation (make test does)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture
def client(dash_app):
    """Flask's test client of the app: callbacks without a browser."""
    return dash_app.server.test_client()

"""The notebooks (their ``.ipynb`` files are the source) run top to bottom without an error and are stored without outputs.

Every ``notebooks/*.ipynb`` is executed in a fresh kernel of this interpreter (nbclient), on the CPU,
against the shipped ``models/``; any cell that raises fails the test with the cell's traceback. A
notebook is written to take well under two minutes on a laptop CPU; ``BUDGET_S`` leaves room for a
busy machine and fails a notebook that has grown far past that.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
BUDGET_S = 300
CELL_TIMEOUT_S = 300
KERNEL = "workbench-tests"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch) -> str:
    """A kernel spec running this interpreter (found first through JUPYTER_PATH), and a CPU, one-thread env."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "workbench tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("WORKBENCH_DEVICE", "cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the kernel's debugger warns about frozen modules
    monkeypatch.delenv("WORKBENCH_MODELS", raising=False)  # the shipped models, as a reader gets them
    return KERNEL


def test_every_notebook_is_there():
    names = {path.name for path in PATHS}
    assert {"01_quickstart.ipynb", "02_attention_routing.ipynb", "03_probes_and_lens.ipynb",
            "04_error_correction.ipynb", "05_routing_nnsight.ipynb"} <= names, names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs; clear them with "
                       "`.venv/bin/python notebooks/clear_outputs.py`")


def test_clear_outputs_strips_what_a_run_left(tmp_path):
    spec = importlib.util.spec_from_file_location("clear_outputs", NOTEBOOKS / "clear_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    nb = nbformat.read(PATHS[0], as_version=4)
    code = next(cell for cell in nb.cells if cell.cell_type == "code")
    code.outputs, code.execution_count = [nbformat.v4.new_output("stream", text="hi")], 3
    path = tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    assert module.clear(path) and not module.clear(path)
    cleared = nbformat.read(path, as_version=4)
    assert [c.source for c in cleared.cells] == [c.source for c in nb.cells]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cleared.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=kernel_env,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError with the failing cell and its traceback
    elapsed = time.perf_counter() - start
    errors = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
    assert elapsed < BUDGET_S, f"{path.name} took {elapsed:.0f} s; keep every notebook well under 2 minutes on a CPU"

"""Strip outputs and execution counts from notebooks before they are committed.

The ``.ipynb`` files are the notebooks' source: edit them in Jupyter, then run

    .venv/bin/python notebooks/clear_outputs.py            # every notebook here
    .venv/bin/python notebooks/clear_outputs.py 02_*.ipynb # or some

``tests/test_notebooks.py`` executes every notebook and fails one stored with outputs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def clear(path: Path) -> bool:
    """Clear one notebook in place; whether anything changed."""
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str]) -> int:
    paths = [HERE / a if not Path(a).is_absolute() else Path(a) for a in argv] or sorted(HERE.glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: no notebook {missing[0]}; give notebook files in notebooks/", file=sys.stderr)
        return 2
    for path in paths:
        print(f"{path.name}: {'cleared' if clear(path) else 'already clean'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

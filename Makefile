# The two entry points of README.md. Both create .venv and install everything they need.
# torch is pinned first: on this CPU machine class pip takes a local CPU build in seconds; on a GPU
# machine the same pin brings the usual CUDA build from PyPI.
PY := .venv/bin/python
PIP := $(PY) -m pip -q --disable-pip-version-check

.venv/installed: pyproject.toml
	python3 -m venv .venv
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[test]"
	touch $@

.PHONY: app test info
app: .venv/installed
	.venv/bin/workbench info --model default
	@echo "The Dash app is coming (issue #7); above is the shipped default model."

test: .venv/installed
	$(PY) -m pytest -n 2

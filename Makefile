# Two commands matter: `make demo` and `make test`. Both do all set-up first, idempotently.
VENV   := .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/sleep-agent
STAMP  := $(VENV)/.installed

.PHONY: install model demo test test-all test-install test-fast bench eval-quick lint clean

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: $(STAMP)

# Converts the default model once into the cache (reused afterwards).
model: install
	$(CLI) prepare-model

demo: model
	$(PY) examples/sleep_demo.py

# What CI runs: every test but the slowest real-component runs (marked heavy) and the fresh
# installs on other Pythons and per extra (marked install). The 15 slowest tests are listed at the end.
test: model
	$(PY) -m pytest -v --durations=15 -m "not heavy and not install"

# Everything, the heavy runs and fresh installs included (about an hour more on 2 cores).
test-all: model
	$(PY) -m pytest -v --durations=15

# Fresh virtual environments: the core on each Python 3.11-3.13 found here, and each extra.
test-install: model
	$(PY) -m pytest -v --durations=15 -m install

# Unit tests only: no converted model, no vLLM server.
test-fast: install
	$(PY) -m pytest -v -m "not slow and not vllm and not install"

bench: model
	$(PY) benchmarks/swap_latency.py
	$(PY) benchmarks/memory_overhead.py
	$(PY) benchmarks/sleep_acceptance.py

# Every evaluation protocol at its quick size; results and plots under docs/eval/quick.
eval-quick: model
	for p in p1 p2 p3 p4 p5 p6 p7; do $(CLI) eval $$p --quick --out docs/eval/quick || exit 1; done
	for e in textworld scienceworld miniwob terminal; do $(CLI) eval agent --env $$e --quick --out docs/eval/agents || exit 1; done

lint: install
	$(VENV)/bin/ruff check sleep_agent tests examples graphs benchmarks && $(VENV)/bin/ruff format --check sleep_agent tests examples graphs benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

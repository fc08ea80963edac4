# finelip-kit: `make test` and `make demo` set up a local .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch + torchvision pinned as a pair that installs from this project's machines' local wheels.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: setup test test-fast demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[all]"
	touch $(STAMP)

setup: $(STAMP)

test: setup  ## every test, slow ones included (what CI runs)
	$(PY) -m pytest

test-fast: setup  ## skip the slow (multi-process, notebook) tests
	$(PY) -m pytest -m "not slow"

demo: setup  ## the main job on the embedded synthetic benchmark
	@echo "make demo runs the synthetic benchmark, which is not built yet (see README: Status)." >&2
	@exit 2

bench: setup  ## benchmark tables (CLIM scoring)
	$(PY) benchmarks/bench_clim.py

clean:
	rm -rf $(VENV) .pytest_cache

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

demo: setup  ## the main job: fine-tune the packaged tiny CLIP FineLIP-style on the synthetic benchmark
	$(PY) -m finelip_kit.cli train --preset synthetic-tiny --out runs/demo
	@echo "run folder: runs/demo (metrics.jsonl, checkpoints/)"

bench: setup  ## benchmark tables (CLIM scoring)
	$(PY) benchmarks/bench_clim.py

clean:
	rm -rf $(VENV) .pytest_cache

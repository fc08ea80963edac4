# finelip-kit: `make test` and `make demo` set up a local .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch + torchvision pinned as a pair that installs from this project's machines' local wheels.
TORCH  := torch==2.14.1 torchvision==0.29.1

KERNEL := finelip-kit

.PHONY: setup kernel lab test test-fast demo bench lock clean

# Every package at the version of the lock (requirements/constraints.txt; refresh: make lock).
LOCK   := requirements/constraints.txt

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) $(TORCH)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[all]"
	touch $(STAMP)

setup: $(STAMP)

# Tests run in TEST_WORKERS processes (pytest-xdist), a test file per process at a time (the SLURM
# cluster and the browser are started once per file), each with one thread: on 2 cores that is
# 11 min against about 17 for plain `.venv/bin/python -m pytest` (one process, two threads).
# The packaged base's whole pretraining rerun (6 min) is left to `pytest -m full`.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: setup  ## every test, slow ones included (what CI runs)
	$(PYTEST) --durations=20  # the slowest tests listed: where CI time goes

test-fast: setup  ## skip the slow (multi-process, notebook) tests
	$(PYTEST) -m "not slow"

kernel: setup  ## register this environment as the Jupyter kernel "finelip-kit" (for JupyterLab and papermill)
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "finelip-kit (.venv)" >/dev/null
	@echo "Jupyter kernel $(KERNEL) -> $(abspath $(PY))"

demo: kernel  ## the main job: one ablation grid point on the synthetic benchmark (about 5 min on 2 CPU cores)
	mkdir -p ablations/results
	$(VENV)/bin/papermill ablations/grid.ipynb ablations/results/default.ipynb -p atrm_k 16 -k $(KERNEL)
	@echo "executed notebook: ablations/results/default.ipynb"
	@echo "record:            ablations/results/default.json (explore with ablations/explorer.ipynb)"
	@echo "model:             ablations/results/default/model (notebooks/04_token_alignment.ipynb looks inside it)"
	@$(VENV)/bin/finelip show ablations/results/default.json

lab: kernel  ## JupyterLab on the kit's kernel, in the checkout (the notebooks: notebooks/, ablations/)
	$(VENV)/bin/jupyter lab --notebook-dir=. --MappingKernelManager.default_kernel_name=$(KERNEL)

bench: setup  ## benchmark tables (CLIM scoring)
	$(PY) benchmarks/bench_clim.py

lock:  ## re-resolve pyproject.toml in a fresh venv and write requirements/constraints.txt + environment.yml
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet $(TORCH)
	.lock-venv/bin/python -m pip install --quiet -e ".[all]"
	.lock-venv/bin/python tools/lock.py --freeze .lock-venv/bin/python
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .pytest_cache

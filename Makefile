# The README's commands. `make setup` builds .venv from backends/$(BACKEND).txt; BACKEND is
# cpu, cuda12 or cuda13, picked from the NVIDIA driver (backends/pick.sh) unless given.
ifdef BACKEND
BACKEND_WHY := as given
else
BACKEND := $(shell sh backends/pick.sh)
BACKEND_WHY := picked by backends/pick.sh from nvidia-smi; set BACKEND=cpu|cuda12|cuda13 to choose
endif
VENV ?= .venv
PY := $(VENV)/bin/python
# MNIST from ../shared/data when the checkout sits beside it; else ~/.cache/xpnet (downloaded).
export XPNET_DATA_DIR ?= $(if $(wildcard ../shared/data/mnist),$(abspath ../shared/data),)

.PHONY: setup oracles test test-fast test-cuda bench bench-full demo lint clean

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.installed-$(BACKEND): $(PY) backends/$(BACKEND).txt pyproject.toml
	$(PY) -m pip install -q --disable-pip-version-check -r backends/$(BACKEND).txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(VENV)/.installed-$(BACKEND)
	@echo "make setup: BACKEND=$(BACKEND) ($(BACKEND_WHY))"

# The suite's oracles (PyTorch, ONNX Runtime): test-only, so `make setup` and `make bench` go without.
$(VENV)/.installed-oracles: $(VENV)/.installed-$(BACKEND) backends/oracles.txt
	$(PY) -m pip install -q --disable-pip-version-check -r backends/oracles.txt
	touch $@

oracles: $(VENV)/.installed-oracles

# The suite twice: with the cpu backend's numba kernels, then with the NumPy routines alone
# (XPNET_JIT=0), which every extra keeps as its pure-NumPy path.
test: setup oracles
	$(PY) -m pytest -q -rs tests
	XPNET_JIT=0 $(PY) -m pytest -q -rs tests

# Everything but the end-to-end runs (examples, command line, MPI jobs, learning on MNIST
# slices), with the kernels on: the quick loop while working.
test-fast: setup oracles
	$(PY) -m pytest -q -rs -m "not slow" tests

test-cuda: setup oracles
	XPNET_DEVICE=cuda $(PY) -m pytest -q -rs tests

bench: setup
	$(PY) -m xpnet bench --quick --quiet

bench-full: setup
	$(PY) -m xpnet bench --quiet

demo: setup
	$(PY) -m xpnet train mnist_mlp --epochs 1

lint: setup
	$(PY) -m ruff check xpnet tests bench examples

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks bench/results/latest

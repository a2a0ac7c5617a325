# dlsys: two commands on a fresh clone.
#   make demo   set up .venv (torch, dlsys), then run the main job into results/
#   make test   the same set-up, then ruff, mypy and the whole test suite
# TORCH picks the torch requirement installed when the venv has none (a CPU build here).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
# Build tools live in the venv so the editable install builds without isolation (fast reruns).
BUILD_DEPS := 'scikit-build-core>=0.10' 'pybind11>=2.12' ninja 'cmake>=3.25'
STAMP := $(VENV)/.dlsys-installed
NATIVE_SOURCES := CMakeLists.txt pyproject.toml $(wildcard kernels/csrc/*)
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck pytest bench docs-img clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.torch: | $(PY)
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH)"
	@touch $@

$(STAMP): $(NATIVE_SOURCES) | $(VENV)/.torch
	$(PIP) install -q $(BUILD_DEPS)
	$(PIP) install -q --no-build-isolation -e '.[test,dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/dlsys reproduce --quick --out results

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the editable install's import redirect, so it checks a tree of links
# that lays the area folders out as the installed dlsys package.
typecheck: $(STAMP)
	@rm -rf build/mypy && mkdir -p build/mypy/dlsys
	@for d in common simulator analytics kernels training cli reproduce distributed; do ln -s ../../../$$d build/mypy/dlsys/$$d; done
	cd build/mypy && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p dlsys

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	@for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# The README's pictures, from one quick report (so they show what a user's run shows).
DOC_IMAGES := simulator/staleness.png evaluation/curves/curves.png lr-range/lr_range.png \
	kernels/kernels_benchmark.png
docs-img: $(STAMP)
	rm -rf build/docs-img
	$(BIN)/dlsys reproduce --quick --quiet --only simulator,evaluation,lr-range,kernels \
		--out build/docs-img
	cd build/docs-img && cp $(DOC_IMAGES) ../../docs/img/

clean:
	rm -rf build results .pytest_cache .mypy_cache .ruff_cache .hypothesis

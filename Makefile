# Two commands a new user types: `make serve` and `make test`. Both create the virtual environment
# and install exactly the versions in constraints.txt first. The gateway's own commands run from
# .venv/bin, which need not be on PATH: `make check`, `make rollout`, `make replay`, `make demo`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# pip's own output (what it collects, downloads and installs): a first install takes minutes.
PIP    := $(BIN)/pip install --constraint constraints.txt
# System tools some tests need; without one, its tests are skipped and the end of `make test` says
# which (.ci/run installs them; Debian: apt-get install wrk prometheus haproxy).
TOOLS  := wrk prometheus promtool haproxy

.PHONY: serve check rollout replay demo test bench profile locust soak audit lint typecheck \
	unit models lock clean

# make serve fails before uvicorn's or gRPC's bare "address already in use" when a port is taken,
# and says how to pick others: PORT (HTTP) and GRPC_PORT, else the config's server.port and
# server.grpc_port (GATEWAY_CONFIG or config/). PORT alone moves gRPC to PORT + 1.
define PORT_FREE
import socket, sys
from gateway.errors import ConfigError
from gateway.settings import load_settings
try:
    server = load_settings().server
except ConfigError:
    sys.exit(0)  # gateway serve says what is wrong with the config
http = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else server.port
grpc = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] else server.grpc_port
for name, port in (("HTTP", http), ("gRPC", grpc)):
    if not port:
        continue  # gRPC off
    with socket.socket(socket.AF_INET6 if ":" in server.host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((server.host, port))
        except OSError as exc:
            sys.exit(f"{name} port {port} on {server.host} is in use ({exc.strerror}): a "
                     f"gateway may already be running; choose other ports: make serve "
                     f"PORT={http + 80} GRPC_PORT={http + 81}")
endef
export PORT_FREE

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.serve: $(BIN)/python pyproject.toml constraints.txt
	@echo "installing the gateway and its pinned dependencies into $(VENV) (once; about a minute)"
	$(PIP) --editable .
	touch $@

$(VENV)/.test: $(BIN)/python pyproject.toml constraints.txt
	@echo "installing the gateway, the test and training tools into $(VENV) (once; a few minutes)"
	$(PIP) --editable '.[test]'
	touch $@ $(VENV)/.serve

# PORT alone moves gRPC beside it (PORT + 1), so a second gateway never collides on 8001.
SERVE_GRPC_PORT = $(or $(GRPC_PORT),$(if $(PORT),$(shell echo $$(($(PORT) + 1)))))

serve: $(VENV)/.serve        ## start the gateway on the shipped models and config/; PORT=8080 (GRPC_PORT=8081) picks the ports
	@$(BIN)/python -c "$$PORT_FREE" "$(PORT)" "$(SERVE_GRPC_PORT)"
	$(BIN)/gateway serve $(if $(PORT),--port $(PORT)) $(if $(SERVE_GRPC_PORT),--grpc-port $(SERVE_GRPC_PORT))

check: $(VENV)/.serve        ## gateway check: config, routing and every model version it needs
	$(BIN)/gateway check $(ARGS)

# Without --metrics or --prometheus in ARGS, the gateway `make serve` started is the evidence.
EVIDENCE = $(if $(or $(findstring --metrics,$(ARGS)),$(findstring --prometheus,$(ARGS))),,\
	--metrics http://127.0.0.1:$(or $(PORT),8000)/metrics)

rollout: $(VENV)/.serve      ## gateway rollout $(ARGS), e.g. make rollout ARGS="--once --dry-run"
	$(BIN)/gateway rollout $(EVIDENCE) $(ARGS)

replay: $(VENV)/.serve       ## gateway replay $(ARGS), e.g. make replay ARGS="capture --model breast-cancer --version 2"
	$(BIN)/gateway replay $(ARGS)

demo: $(VENV)/.serve         ## held-out traffic and true labels to make serve's gateway for MINUTES (10)
	$(BIN)/gateway demo --minutes $(or $(MINUTES),10) $(if $(RATE),--rate $(RATE)) \
		$(if $(PORT),--url http://127.0.0.1:$(PORT)) $(ARGS)

test: lint typecheck unit    ## ruff, mypy and the whole pytest suite (~10 minutes on 2 cores)

bench: $(VENV)/.test         ## all 14 tables (about half an hour); one table: make bench BENCH_ARGS="--tables 9"
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

# pytest prints a dot per test as it goes (about 1,000 tests: 10 minutes on 2 cores, more on a busy
# machine); after it, which system tools were missing and so which tests were skipped.
unit: $(VENV)/.test
	@echo "pytest: about 1,000 tests, ~10 minutes on 2 cores; a dot per passed test, s per skipped"
	@$(BIN)/pytest; status=$$?; missing=""; \
	for tool in $(TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "not installed:$$missing: their tests were skipped (wrk: the bench and profile smoke tests;" \
		     "prometheus, promtool: config/prometheus and the dashboard's queries; haproxy: the" \
		     "two-replica tests). Debian: apt-get install wrk prometheus haproxy (.ci/run does)"; \
	fi; exit $$status

models: $(VENV)/.test        ## rebuild models/ with the pinned training libraries
	$(BIN)/python models/train.py

lock: $(VENV)/.test          ## re-pin constraints.txt from the current environment
	$(BIN)/pip freeze --exclude-editable | grep -v "^gateway" > constraints.txt
	# The GPU variant (Dockerfile VARIANT=gpu) swaps in onnxruntime-gpu at the same version.
	echo "onnxruntime-gpu==$$($(BIN)/python -c 'import onnxruntime; print(onnxruntime.__version__)')" >> constraints.txt
	sort -f -o constraints.txt constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

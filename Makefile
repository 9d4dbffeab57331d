# fedpeer: two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint proto proto-check bench bench-agent clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fedpeer needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The agent alone is `pip install fedpeer`; tests and the demo need every side.
	$(BIN)/python -m pip install --quiet -e '.[coordinator,noise,dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m coordinator.demo --out demo-output

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Regenerate the committed gRPC stubs from proto/ (pinned generator: see pyproject.toml).
proto: $(STAMP)
	$(BIN)/python -m fedpeer.protogen

proto-check: $(STAMP)
	$(BIN)/python -m fedpeer.protogen --check

bench: $(STAMP)
	$(BIN)/python bench/engine.py

# The waiting agent's memory and CPU, and what each install weighs (docs/benchmarks.md).
bench-agent: $(STAMP)
	$(BIN)/python bench/agent_idle.py
	$(BIN)/python bench/install_size.py

clean:
	rm -rf $(VENV) demo-output build *.egg-info

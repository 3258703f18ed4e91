# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The demo needs the runtime only; the tests also need the dev extra (schemathesis, locust...).
RUNTIME := $(VENV)/.installed-runtime
DEV     := $(VENV)/.installed-dev

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUNTIME): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV)

demo: $(RUNTIME)
	$(BIN)/caas-sim demo

test: $(DEV)
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest -n auto -q

bench: $(RUNTIME)
	$(BIN)/caas-sim bench

clean:
	rm -rf $(VENV)

# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The demo needs the runtime only; the tests also need the dev extra (schemathesis, locust...).
RUNTIME := $(VENV)/.installed-runtime
DEV     := $(VENV)/.installed-dev

# WireMock for `caas-sim bench sim --wiremock` (npm's wiremock package carries the standalone jar).
WIREMOCK_VERSION := 3.13.2
WIREMOCK := .cache/wiremock/node_modules/wiremock/build/wiremock-standalone-$(WIREMOCK_VERSION).jar

.PHONY: demo test bench wiremock clean

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

wiremock: $(WIREMOCK)  # prints the jar's path
	@echo $(abspath $(WIREMOCK))

$(WIREMOCK):
	npm install --silent --no-audit --no-fund --prefix .cache/wiremock wiremock@$(WIREMOCK_VERSION)
	test -f $@

clean:
	rm -rf $(VENV) .cache

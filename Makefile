# Two commands for a fresh machine: `make run` serves the CDS service on SQLite; `make test` runs every check.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest install openapi bench bench-quick bench-instructions clean fhir-server-venv

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	ILIAC_CDS_AUTH_MODE=$${ILIAC_CDS_AUTH_MODE:-disabled} $(BIN)/iliac-cds serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

fhir-server-venv:
	PYTHON=$(PYTHON) scripts/fhir-server-venv.sh

pytest: $(STAMP) fhir-server-venv
	$(BIN)/pytest

test: lint typecheck pytest

openapi: $(STAMP)
	$(BIN)/iliac-cds export-openapi

bench: $(STAMP) fhir-server-venv
	$(BIN)/python -m bench

bench-quick: $(STAMP) fhir-server-venv
	$(BIN)/python -m bench --quick

bench-instructions: $(STAMP)
	$(BIN)/python -m bench.instructions

clean:
	rm -rf $(VENV) .venv-fhir .mypy_cache .pytest_cache .ruff_cache

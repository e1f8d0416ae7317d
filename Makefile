# `make demo`: install tether into .venv and run it against its embedded gateway.
# `make test`: install the test tools into .venv, then lint, type-check and run every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/tether demo

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench tools

typecheck: $(VENV)/.installed
	$(BIN)/mypy --strict src tools bench

unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit

test: lint typecheck
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

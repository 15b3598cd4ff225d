# `make demo` and `make test` each build .venv on first use; nothing else to install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench chaos lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bridge demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/backfill.py

chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

lint: $(STAMP)
	$(BIN)/pip install --quiet mypy ruff
	$(BIN)/ruff check bridge tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .bridge .pytest_cache

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

# Three test processes on two cores: most tests wait on sockets and child processes, so the
# suite takes about half as long as in one process. Each process has its own databases.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 3

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

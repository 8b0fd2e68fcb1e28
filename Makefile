# Two commands on a fresh machine with Python 3.11+ and pip:
#   make demo   runs the whole system locally (no AWS account, no Redis needed)
#   make test   runs the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench bench-faults clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lanes demo

test: $(STAMP)
	$(BIN)/pytest -q

# The edit-test loop: everything but the tests marked slow (processes, long scenarios).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check lanes markets worker scripts tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.budget

# The fault table (issue 12) for 2 and 4 worker processes; about 25 minutes.
bench-faults: $(STAMP)
	$(BIN)/python -m bench.faults

# Everything the build, the tests and the demo leave in the working tree.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	rm -f results.jsonl lanes-demo.png lanes-demo-lambda.png
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

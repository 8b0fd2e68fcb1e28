# Two commands on a fresh machine with Python 3.11+ and pip:
#   make demo   runs the whole system locally (no AWS account, no Redis needed)
#   make test   runs the test suite (make test-faults: the fault and soak rows)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-faults lint bench bench-faults soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lanes demo

# Four tests at a time (pytest-xdist), two per core on a 2-core host: most of a test is
# waiting (on SQS visibility, a child process, a market), not computing. Each xdist worker
# starts its own Redis and moto on free ports.
XDIST := -n 4

# Everything but the fault and soak rows (make test-faults).
test: $(STAMP)
	$(BIN)/pytest -q $(XDIST) -m "not faults"

# The edit-test loop: also without the tests marked slow (processes, long scenarios).
test-fast: $(STAMP)
	$(BIN)/pytest -q $(XDIST) -m "not slow and not faults"

# The fault and soak rows, one at a time: worker processes under faults, and measured rates
# that a second test running beside them would disturb.
test-faults: $(STAMP)
	$(BIN)/pytest -q -m faults

lint: $(STAMP)
	$(BIN)/ruff check lanes markets worker scripts tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.budget

# The fault table (issue 12) for 2 and 4 worker processes; about 25 minutes.
bench-faults: $(STAMP)
	$(BIN)/python -m bench.faults

# The soak (issue 25): 10,000 side effects over 4 workers x 1,000 slots, Redis restarted
# empty twice; prints side effects once/twice/never and keys left without expiry.
soak: $(STAMP)
	$(BIN)/python -m bench.soak

# Everything the build, the tests and the demo leave in the working tree.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	rm -f results.jsonl lanes-demo.png lanes-demo-lambda.png
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo sandbox screenshot test lint bench clean flowchart soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fatcontroller demo

# The scripted story, then everything stays up: the printed address opens the emulated Slack in a browser.
sandbox: $(STAMP)
	$(BIN)/fatcontroller demo --keep

# The README's picture of that page (docs/browser-sandbox.png), taken in headless Chromium.
screenshot: $(STAMP)
	$(BIN)/python -m demo.screenshot

# The suite mostly waits on emulators and bot processes, so it runs in a few workers (pytest-xdist): about
# 8 minutes on 2 cores, against 18 in one; a module marked with an xdist_group runs whole in one worker.
# TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 3
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

# The crash-and-fault campaign (tests/reliability/campaign.py): SOAK_RUNS runs of the real bot killed and
# faulted at random; its figures go into their section of docs/RELIABILITY.md. Exits 1 if a run failed.
SOAK_RUNS ?= 100
soak: $(STAMP)
	$(BIN)/python -m tests.reliability.campaign --runs $(SOAK_RUNS) --report docs/RELIABILITY.md

clean:
	rm -rf $(VENV) build *.egg-info

flowchart: $(STAMP)
	$(BIN)/python -m flows.flowchart README.md

# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint local bench clean

# The venv is rebuilt when the pinned dependencies change.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## demo: the whole pipeline offline on samples/users.csv; exit 0 only if COMPLETED with exact accounting
demo: $(STAMP)
	$(BIN)/jobtracker demo

## test: lint, template checks, unit, contract and integration tests (offline)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml

## local: keep the offline stack running (REST API on :8000, AWS endpoint on :5000)
local: $(STAMP)
	$(BIN)/jobtracker local up

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo-results .bench .artifacts

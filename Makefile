# Two commands do all the set-up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# checkov pins libraries the project pins differently, so the template scanners live in their own venv.
LINT_VENV  := .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed

.PHONY: install demo test lint local bench clean specs

# The venv is rebuilt when the pinned dependencies change.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(LINT_STAMP): constraints-lint.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LINT_VENV)/bin/python -m pip install --quiet -r constraints-lint.txt
	touch $(LINT_STAMP)

## demo: the whole pipeline offline on samples/users.csv; exit 0 only if COMPLETED with exact accounting.
## make demo DEMO=all: one job of every type (imports, FullStory and Keboola exports, track) at once.
demo: $(STAMP)
	$(BIN)/jobtracker demo $(if $(filter all,$(DEMO)),--all,)

## test: lint (ruff, cfn-lint with the serverless rules, checkov), then unit, contract and integration tests
## in two pytest-xdist workers (CI has two cores); worksteal keeps each module's tests, and so its module-scoped
## fixtures, mostly on one worker, and lets the idle worker take over the other's rest. `python -m pytest` alone
## runs in one process.
test: lint
	$(BIN)/python -m pytest -n 2 --dist worksteal

## specs: validate specs/*.yaml and write the bundle the functions read (layers/shared/python/tracker/providers/
## spec/specs.json, committed: `sam build` copies the layer as it is, no pip, no YAML parser in Lambda).
specs: $(STAMP)
	$(BIN)/jobtracker providers bundle

## lint: every finding fixed or suppressed in template.yaml with its reason
lint: $(STAMP) $(LINT_STAMP)
	$(BIN)/ruff check .
	$(LINT_VENV)/bin/cfn-lint template.yaml --append-rules cfn_lint_serverless.rules
	$(LINT_VENV)/bin/checkov --file template.yaml --framework cloudformation --compact --quiet --skip-download

## local: keep the offline stack running (REST API on :8000, AWS endpoint on :5000)
local: $(STAMP)
	$(BIN)/jobtracker local up

## bench: every benchmark in one run (a few minutes): prints a table, writes .bench/results.json
bench: $(STAMP)
	$(BIN)/python -m jobtracker.bench

clean:
	rm -rf $(VENV) $(LINT_VENV) .pytest_cache .ruff_cache demo-results .bench .artifacts

# pms-connector — the two commands of the README are `make run` and `make test`.
# Everything installs into .venv on first use; no AWS account, no Docker.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PORT   ?= 3000
PROPERTIES ?= examples/demo-properties.yaml

.PHONY: install run test lint unit integration e2e test-slow reliability bench sam-validate clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

## Start the connector locally: moto server, the API on http://127.0.0.1:$(PORT), demo properties.
run: install
	$(BIN)/pms-connector local --properties $(PROPERTIES) --port $(PORT)

## Lint the template and the code, then run every test but the slow ones (what CI runs).
test: lint
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/cfn-lint template.yaml infra/*.yaml
	$(BIN)/ruff check .
	$(BIN)/mypy

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

e2e: install
	$(BIN)/python -m pytest tests/e2e

## Long load and soak tests, kept out of the default run.
test-slow: install
	$(BIN)/python -m pytest -m slow

## The reliability suite at the issue's size: 5 properties x 2,000 records per delivery mode, 10% AWS and UCM
## faults, every hostile input, 300 schemathesis examples per operation. Summaries as JSON in reliability-report.jsonl.
reliability: install
	rm -f reliability-report.jsonl
	PMS_RELIABILITY_FULL=1 PMS_RELIABILITY_REPORT=reliability-report.jsonl $(BIN)/python -m pytest tests/reliability

## The benchmark: one table (AWS calls, handler overhead, cold import, end-to-end), also written to bench/results.json.
bench: install
	$(BIN)/python bench/run.py --json bench/results.json

## SAM's own validation (the transform and its lint) of every template, offline; the SAM CLI lives in its own venv (.venv-sam).
sam-validate:
	test -x .venv-sam/bin/sam || ($(PYTHON) -m venv .venv-sam && .venv-sam/bin/python -m pip install --quiet aws-sam-cli)
	for template in template.yaml infra/*.yaml; do \
		AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline SAM_CLI_TELEMETRY=0 \
			.venv-sam/bin/sam validate --lint --template $$template || exit 1; \
	done

clean:
	rm -rf $(VENV) .venv-sam .pytest_cache .mypy_cache .ruff_cache .aws-sam

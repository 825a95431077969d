# The course's commands. `make lab` and `make test` bootstrap everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.13.0. tools/torch_index.py picks the build: PyTorch's CPU wheel index (~190 MB) on a Linux machine without
# an NVIDIA GPU when that index answers within 5 s, else PyPI (on Linux the CUDA build, several GB; a local wheel where
# pip is configured with one). An already installed build that satisfies TORCH_SPEC is kept. GPU users: README.
TORCH_SPEC ?= torch==2.13.0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SOLUTIONS := $(sort $(wildcard notebooks/solutions/*.ipynb))
# Every kernel the course starts (lab, demo, run, tests): torch's OpenMP threads sleep when idle instead of spinning.
# With the default (spinning) policy, each of the many small parallel regions of a decoding step waits for a thread
# that another process has pushed off its core: on a 2-core machine shared with other jobs, lesson 03's generation ran
# 5-9x slower than with PASSIVE (same work, same load; README, "Lesson map"). The variable is read once, when torch
# loads, so it must be in the kernel's environment: setting it from inside a notebook is too late.
# An OMP_WAIT_POLICY of your own (environment or make argument) wins.
KERNEL_ENV := OMP_WAIT_POLICY=$(or $(OMP_WAIT_POLICY),PASSIVE)
# HF_HUB_OFFLINE: the reference tests build their Hugging Face models locally and never reach for a hub.
TEST_ENV := COURSE_FAST=1 TQDM_DISABLE=1 PYDEVD_DISABLE_FILE_VALIDATION=1 $(KERNEL_ENV) HF_HUB_OFFLINE=1
# Test files and notebooks run in TEST_WORKERS processes (pytest-xdist); --dist loadfile keeps each file, and so every
# cell of a notebook with its one kernel, in one process, in order. Much of a FAST notebook is single-threaded Python
# (kernel start, imports, tokenising, plotting, one small operation at a time), so two processes on a 2-core machine
# overlap well: the FAST notebooks took 225 s with 2 workers against 335 s with 1 (README, "Tests").
# More workers than cores only adds memory (a few GB each): TEST_WORKERS=1 runs everything in one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -p no:randomly

# How committed notebooks are cleaned (also the pre-commit hook): keep outputs, execution counts (nbval needs them) and
# widget state (readers without a kernel see the last view), drop papermill's per-cell timings.
NBSTRIPOUT_FLAGS := --keep-output --keep-count --keep-metadata-keys "metadata.widgets" \
	--extra-keys "metadata.papermill cell.metadata.papermill"

.PHONY: setup lab demo test test-unit test-notebooks test-one-thread test-autocast lint run bench gpu-check clean

setup: $(VENV)/.installed
	@$(PY) -m course_utils fetch

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $$($(PY) tools/torch_index.py)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

# JupyterLab refuses to run as root unless told; course containers often run as root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: setup
	$(KERNEL_ENV) $(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

# Classroom demo: the sampling explorer and the RoPE widget as standalone pages (Voila: outputs and widgets, no code),
# served on 127.0.0.1 only and offline; the [demo] extra (Voila) is installed on first use. Classroom size by default
# (DEMO_CLASSROOM=0 for the normal size; each page also has its own toggle). README, "For teachers".
DEMO_PORT ?= 8866
DEMO_CLASSROOM ?= 1
demo: setup
	@$(PY) -c "import voila" 2>/dev/null || $(PY) -m pip install --quiet -e ".[demo]"
	@echo "Sampling explorer: http://127.0.0.1:$(DEMO_PORT)/voila/render/sampling_explorer.ipynb"
	@echo "RoPE widget:       http://127.0.0.1:$(DEMO_PORT)/voila/render/rope.ipynb   (Ctrl-C stops the server)"
	$(KERNEL_ENV) COURSE_CLASSROOM=$(DEMO_CLASSROOM) TQDM_DISABLE=1 $(VENV)/bin/voila demo --no-browser \
		--Voila.ip=127.0.0.1 --port=$(DEMO_PORT) --Voila.port_retries=0

test: setup
	$(TEST_ENV) $(PYTEST) tests notebooks --nbval-lax --nbval-current-env

# ruff (pyflakes, pycodestyle, import order, bugbear; settings in pyproject.toml) over the package, tests, benchmarks, tools.
lint: setup
	$(VENV)/bin/ruff check course_utils tests benchmarks tools

test-unit: setup
	$(TEST_ENV) $(PYTEST) tests

test-notebooks: setup
	$(TEST_ENV) $(PYTEST) notebooks --nbval-lax --nbval-current-env

# The lessons whose checked outputs come from float arithmetic, on one thread: committed outputs must not depend on the
# thread count (CI runs this beside `make test`, which uses every core).
test-one-thread: setup
	$(TEST_ENV) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PYTEST) notebooks/05_positional_encodings.ipynb \
		notebooks/06_rope.ipynb --nbval-lax --nbval-current-env

# Lessons 07 and 08 in FAST mode through the GPU code path on the CPU: bfloat16 autocast (COURSE_AUTOCAST=bf16) in
# their training and memory cells, every assert active. Outputs differ from the committed float32 ones; --nbval-lax
# compares only cells tagged nbval-check-output, and those print the same under autocast.
test-autocast: setup
	$(TEST_ENV) COURSE_AUTOCAST=bf16 $(PYTEST) notebooks/07_finetuning_cost.ipynb notebooks/08_lora.ipynb \
		--nbval-lax --nbval-current-env

# Full-mode run of every lesson, outputs written back in place (this is how committed outputs are made).
run: setup
	@for nb in $(NOTEBOOKS) $(SOLUTIONS); do \
		start=$$(date +%s); \
		$(KERNEL_ENV) $(VENV)/bin/papermill --cwd $$(dirname $$nb) -k python3 $$nb $$nb || exit 1; \
		$(VENV)/bin/nbstripout $(NBSTRIPOUT_FLAGS) $$nb; \
		echo "$$nb: $$(( $$(date +%s) - start )) s"; \
	done

# Speed and correctness against Hugging Face transformers / PEFT on the same weights (both come with the [dev] extra).
bench: setup
	$(PY) benchmarks/compare_hf.py
	$(PY) benchmarks/decode_ablation.py
	$(PY) benchmarks/load_time.py
	$(PY) benchmarks/timings.py

# The GPU path of lessons 07-08 on a SmolLM2-135M-shaped model with random weights: bf16 decoding speed at batch 1 and 8,
# LoRA and full fine-tuning step memory under autocast beside torch.cuda.max_memory_allocated, and the sync-debug check.
# Needs only torch (a CUDA build) and this checkout: no weights, no network, no setup. Results: benchmarks/results/.
# Without a GPU: make gpu-check GPU_CHECK_ARGS="--device cpu --small" (the code path on a tiny model, in seconds).
GPU_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV)

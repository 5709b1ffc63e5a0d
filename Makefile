# The two commands of the README:
#   make pipeline   # install into .venv, then CPT -> SFT -> RLVR on the tiny CPU default
#   make test       # install into .venv, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install pipeline test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "swallow-train needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

pipeline: $(STAMP)
	$(BIN)/swallow-train pipeline $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)  # ruff's linter; the formatter is not used (tables and aligned maps are laid out by hand)
	$(BIN)/ruff check .

bench: $(STAMP)  # the CPU benchmarks (README, Benchmarks); bench_export and bench_train_step by hand
	$(BIN)/python bench/bench_packing.py
	$(BIN)/python bench/bench_prepare.py
	$(BIN)/python bench/bench_reward.py

clean:
	rm -rf runs .pytest_cache .ruff_cache

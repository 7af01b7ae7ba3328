# ticketforge: one command per job.  `make test` installs everything it needs from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.setup-done
MODEL  ?= vgg9_binw
# The default suite is CPU bound: it runs on TEST_WORKERS pytest-xdist processes (2 cores on
# the project machines: ~9 min instead of ~16 on one).  PYTEST_ARGS is passed on as is.
TEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: setup test test-unit test-rtlsim test-tools test-slow test-portable hw train eval clean help

help:
	@echo "make hw MODEL=vgg9_binw   run the flow for one config (see README)"
	@echo "   HLS=1 [BASELINE=vgg9_bnn]  ... with the hls4ml C-simulation stage (and the BNN baseline)"
	@echo "make test                 set up .venv and run the default test suite"
	@echo "make test-unit            ... only its pure-Python tier (test-rtlsim, test-tools: the others)"
	@echo "make test-slow            the slow, marked checks (full trainings, full splits)"
	@echo "make test-portable        the float-sensitive tests under every torch CPU kernel set and 1, 2 threads"

setup: $(STAMP)

# Idempotent: the stamp is rebuilt only when the dependency list changes.
$(STAMP): pyproject.toml .ci/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "torch==2.13.0"
	# spikingjelly 2.0.0 declares torchvision/torchaudio and norse 1.1.0 torchvision, which
	# would pull a CUDA torch: install them without dependencies, plus what they really
	# import (in pyproject; norse: numpy, torch, nir, nirtorch).
	$(PIP) install -q --no-deps "spikingjelly==2.0.0" "norse==1.1.0"
	@# pip reports spikingjelly's and norse's undeclared-on-purpose requirements as an ERROR block; it is not
	@# one (see above), so those lines become a one-line note.  pip's own failure still fails.
	@set -o pipefail; $(PIP) install -q -c .ci/constraints.txt -e ".[dev]" 2>&1 | \
	  { grep -v -e "dependency resolver does not currently take into account" -e "^spikingjelly 2.0.0 requires" -e "^norse 1.1.0 requires" || true; }
	@echo "note: spikingjelly 2.0.0 and norse 1.1.0 are installed without torchvision, torchaudio, requests and SciencePlots on purpose"
	@$(MAKE) --no-print-directory iverilog
	@$(PY) -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	@touch $(STAMP)

.PHONY: iverilog
iverilog:
	@if command -v iverilog >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Icarus Verilog with apt-get"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null) \
	    || { echo "error: apt-get could not install iverilog"; exit 1; }; \
	else \
	  echo "error: Icarus Verilog (iverilog) is missing and this user cannot apt-get it."; \
	  echo "       Install it with: sudo apt-get install iverilog   (Debian/Ubuntu)"; exit 1; \
	fi

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

# the default suite's tiers (tests/conftest.py: TIERS), one at a time
test-unit test-rtlsim test-tools: test-%: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m $* $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

# The main job: model -> quantize -> rtl -> sim (Verilator, whole test split) -> synth (the
# config's [hw] board) -> report; a stage whose inputs did not change is kept.
# Float results differ between machines by rounding: torch picks its vector kernels by CPU
# (ATEN_CPU_CAPABILITY) and splits reductions by thread count.  Run the tests that compare
# float implementations (marker float_sensitive) under each setting this CPU can run.
PORTABLE_CAPS := default $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo avx2) \
                 $(shell grep -qw avx512f /proc/cpuinfo 2>/dev/null && echo avx512)
test-portable: setup
	@set -e; for cap in $(PORTABLE_CAPS); do for threads in 1 2; do \
	  export ATEN_CPU_CAPABILITY=$$cap OMP_NUM_THREADS=$$threads; \
	  echo "== ATEN_CPU_CAPABILITY=$$cap, $$threads thread(s): torch uses" \
	    "$$($(PY) -c 'import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())')"; \
	  $(PY) -m pytest -q -m float_sensitive $(PYTEST_ARGS); \
	done; done

hw: setup
	$(PY) -m ticketforge hw --config $(MODEL) $(if $(HLS),--hls) $(if $(BASELINE),--baseline $(BASELINE))

train: setup
	$(PY) -m ticketforge train --config $(MODEL)

eval: setup
	$(PY) -m ticketforge eval --config $(MODEL)

clean:
	rm -rf build

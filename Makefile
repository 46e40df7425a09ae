# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= models/stylebox-a0.25.onnx
export STYLEBOX_MODEL_PATH ?= $(MODEL)

.PHONY: serve test lint bench clean help

help:
	@echo "make serve  - create .venv (runtime deps only), serve $(MODEL) on :8000"
	@echo "make test   - create .venv (with train + dev extras), lint, run every test"
	@echo "make bench  - ONNX Runtime ms/image by alpha, vs the alpha=1 single-style peer"

# Runtime-only venv: onnxruntime, fastapi, ... and no torch.
$(VENV)/.serve-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.serve-installed
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $@

serve: $(VENV)/.serve-installed
	@test -f "$(STYLEBOX_MODEL_PATH)" || { \
	  echo "stylebox: model file '$(STYLEBOX_MODEL_PATH)' is missing."; \
	  echo "  Train and export one:  stylebox train --config configs/default.toml --out runs/a0.25"; \
	  echo "                         stylebox export runs/a0.25/last.pt -o $(STYLEBOX_MODEL_PATH)"; \
	  echo "  or point STYLEBOX_MODEL_PATH at an existing .onnx file."; \
	  exit 1; }
	$(BIN)/stylebox serve

test: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Speed lives here, not in unit tests. BENCH_ARGS="--model models/x.onnx" times a file.
BENCH_ARGS ?= --alpha 1 --alpha 0.5 --alpha 0.25 --alpha 0.1 --sizes 256,512,1024
bench: $(VENV)/.test-installed
	$(BIN)/stylebox bench $(BENCH_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

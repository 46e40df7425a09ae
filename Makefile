# Two commands do all set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= models/stylebox-a0.25.onnx
export STYLEBOX_MODEL_PATH ?= $(MODEL)
# Served beside it as `fast` (README "Several models"); FAST= serves the one model alone.
FAST   ?= models/stylebox-a0.25-fast.onnx

.PHONY: serve test lint bench soak clean help

help:
	@echo "make serve  - create .venv (runtime deps + openvino), serve $(MODEL) on :8000"
	@echo "make test   - create .venv (train, dev, openvino extras), lint, run every test"
	@echo "make bench  - ms/image by engine, precision and alpha, vs the alpha=1 single-style peer"
	@echo "make soak   - long fuzz + load runs (docs/reliability.md)"

# Runtime-only venv: onnxruntime, openvino (bf16 on AMX CPUs), fastapi, ... and no torch.
$(VENV)/.serve-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[openvino]'
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.serve-installed
	$(BIN)/python -m pip install -q -e '.[train,dev,openvino]'
	touch $@

serve: $(VENV)/.serve-installed
	@test -f "$(STYLEBOX_MODEL_PATH)" || { \
	  echo "stylebox: model file '$(STYLEBOX_MODEL_PATH)' is missing."; \
	  echo "  The default model ships in git:  git checkout -- models/stylebox-a0.25.onnx"; \
	  echo "  Or train and export one (make serve's venv has no torch: add it):"; \
	  echo "    $(BIN)/pip install -e '.[train]'"; \
	  echo "    $(BIN)/stylebox train --config configs/default.toml --out runs/a0.25"; \
	  echo "    $(BIN)/stylebox export runs/a0.25/last.pt -o $(STYLEBOX_MODEL_PATH)"; \
	  echo "  or point MODEL= (STYLEBOX_MODEL_PATH) at an existing .onnx file."; \
	  exit 1; }
	STYLEBOX_EXTRA_MODELS="$${STYLEBOX_EXTRA_MODELS-$(if $(FAST),fast=$(FAST))}" $(BIN)/stylebox serve

# PYTEST_ARGS='-m "not container"' leaves out the container image test (README "Deployment").
PYTEST_ARGS ?=
test: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Speed lives here, not in unit tests: latency per size on every engine and precision here
# (ONNX Runtime, OpenVINO f32 and, on AMX CPUs, bf16; vs the alpha=1 single-style peer, with
# the roofline), HTTP load at 1/2/4 concurrent requests under several engine/thread/concurrency
# settings, and the session-option and OpenVINO-hint sweeps; writes docs/performance.md
# (between its bench markers) and docs/performance.png.
# BENCH_ARGS="--model models/x.onnx ..." times a file;
# BENCH_ARGS="--sizes 512 --repeats 3 --concurrency ''" is a quick look.
BENCH_ARGS ?= --alpha 0.25 --alpha 0.5 --alpha 0.1 --sizes 256,512,1024,1920x1080 \
	--repeats 7 --requests 24 --sweep \
	--load-env "" \
	--load-env "STYLEBOX_ENGINE=onnxruntime" \
	--load-env "STYLEBOX_ENGINE=openvino" \
	--load-env "STYLEBOX_ENGINE=openvino STYLEBOX_OV_HINT=throughput" \
	--load-env "STYLEBOX_ENGINE=onnxruntime STYLEBOX_INTRA_OP_SPINNING=true" \
	--load-env "STYLEBOX_ENGINE=onnxruntime STYLEBOX_MAX_CONCURRENCY=1" \
	--load-env "STYLEBOX_ENGINE=onnxruntime STYLEBOX_MAX_CONCURRENCY=2 STYLEBOX_INTRA_OP_THREADS=1" \
	--load-env "STYLEBOX_ENGINE=onnxruntime STYLEBOX_MAX_CONCURRENCY=1 STYLEBOX_INTRA_OP_THREADS=1" \
	--load-env "STYLEBOX_ENGINE=onnxruntime STYLEBOX_MAX_CONCURRENCY=1 STYLEBOX_MAX_QUEUE=0"
BENCH_REPORT ?= docs/performance.md
bench: $(VENV)/.test-installed
	$(BIN)/stylebox bench $(BENCH_ARGS) --report $(BENCH_REPORT)

# Long reliability runs (minutes; results in docs/reliability.md): 20x the decode fuzz with
# fresh examples, then 32 concurrent 4K uploads and mixed traffic above capacity.
SOAK_ARGS ?= --seconds 60 --clients 24 --burst 32
soak: $(VENV)/.test-installed
	STYLEBOX_SOAK=1 $(BIN)/python -m pytest tests/service/test_fuzz_decode.py -q
	$(BIN)/stylebox soak $(SOAK_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

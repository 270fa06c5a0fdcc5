# Two commands for a fresh machine: `make run` (engine + proxy) and `make test`.
# Every target installs what it needs into the project's own virtualenvs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
ENGINE_VENV := .venv-engine
QUANT_VENV := .venv-quant
MODEL_DIR := build/models/tiny-llama
QMODEL_DIR := build/models/tiny-llama-w4a16
GPTQ_DIR := build/models/tiny-llama-gptq
AWQ_DIR := build/models/tiny-llama-awq
# A larger model of the same recipe for bench.engine_quant --family small (not built by `make
# test`): 6.3M parameters, ~4.5 min on one core; there every pair of methods differs measurably.
SMALL_DIR := build/models/small-llama
SMALL_SHAPE := --hidden 256 --layers 4 --intermediate 1024 --train-steps 400
TOOLS_DIR := build/tools
SERVE_VENV := .venv-serve
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# Where `cache-proxy export-embedder` writes and the proxy reads the embedder's ONNX export.
export CACHE_PROXY_CACHE_DIR ?= $(CURDIR)/build/cache-proxy
EMBEDDER_EXPORT := $(CACHE_PROXY_CACHE_DIR)/onnx/packaged-all-MiniLM-L6-v2-0.1.0/embedder.json
# The serving-only venv's run: the proxy's e2e tests and the no-torch import check.
SERVE_TESTS := tests/test_import_graph.py tests/embedding tests/e2e/test_proxy_e2e.py \
	tests/e2e/test_shared_cache_e2e.py

.PHONY: run test check venv serve-venv embedder engine model quant quant-small helm redis hey lint typecheck bench clean schema

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# The serving core alone (no torch, no tools' extras), as the proxy image installs it.
serve-venv: $(SERVE_VENV)/.installed
$(SERVE_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --upgrade pip
	$(SERVE_VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The proxy serves from an export only; this makes it (once, kept while current).
embedder: $(EMBEDDER_EXPORT)
$(EMBEDDER_EXPORT): $(VENV)/.installed
	$(VENV)/bin/cache-proxy export-embedder

engine: $(ENGINE_VENV)/.installed
$(ENGINE_VENV)/.installed: deploy/install-engine-venv.sh
	bash deploy/install-engine-venv.sh $(ENGINE_VENV)
	touch $@

model: $(MODEL_DIR)/config.json
$(MODEL_DIR)/config.json: $(ENGINE_VENV)/.installed engine/tiny_model.py
	$(ENGINE_VENV)/bin/python -m engine.tiny_model --out $(MODEL_DIR)

# W4A16 three ways (engine/quantize.py --method): rtn (round-to-nearest, no data), gptq and
# awq (both calibrated on local text from engine/calibration.py).
quant: $(QMODEL_DIR)/config.json $(GPTQ_DIR)/config.json $(AWQ_DIR)/config.json
$(QUANT_VENV)/.installed: deploy/install-quant-venv.sh
	bash deploy/install-quant-venv.sh $(QUANT_VENV)
	touch $@
$(QMODEL_DIR)/config.json: $(QUANT_VENV)/.installed $(MODEL_DIR)/config.json engine/quantize.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(MODEL_DIR) --out $(QMODEL_DIR) --method rtn
$(GPTQ_DIR)/config.json: $(QUANT_VENV)/.installed $(MODEL_DIR)/config.json engine/quantize.py engine/calibration.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(MODEL_DIR) --out $(GPTQ_DIR) --method gptq
$(AWQ_DIR)/config.json: $(QUANT_VENV)/.installed $(MODEL_DIR)/config.json engine/quantize.py engine/calibration.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(MODEL_DIR) --out $(AWQ_DIR) --method awq

quant-small: $(SMALL_DIR)-w4a16/config.json $(SMALL_DIR)-gptq/config.json $(SMALL_DIR)-awq/config.json
$(SMALL_DIR)/config.json: $(ENGINE_VENV)/.installed engine/tiny_model.py
	$(ENGINE_VENV)/bin/python -m engine.tiny_model --out $(SMALL_DIR) $(SMALL_SHAPE)
$(SMALL_DIR)-w4a16/config.json: $(QUANT_VENV)/.installed $(SMALL_DIR)/config.json engine/quantize.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(SMALL_DIR) --out $(SMALL_DIR)-w4a16 --method rtn
$(SMALL_DIR)-gptq/config.json: $(QUANT_VENV)/.installed $(SMALL_DIR)/config.json engine/quantize.py engine/calibration.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(SMALL_DIR) --out $(SMALL_DIR)-gptq --method gptq
$(SMALL_DIR)-awq/config.json: $(QUANT_VENV)/.installed $(SMALL_DIR)/config.json engine/quantize.py engine/calibration.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(SMALL_DIR) --out $(SMALL_DIR)-awq --method awq

helm: $(TOOLS_DIR)/helm
$(TOOLS_DIR)/helm:
	bash k8s/tools/install-helm.sh $(TOOLS_DIR)

# k8s/chart/values.schema.json's proxy.config and tenants, from cache_proxy/config.py's models
# (cache_proxy/config_schema.py; tests/k8s fails while the file is out of date).
schema: venv
	$(VENV)/bin/python -m cache_proxy.config_schema

# The shared tier's tests start their own redis-server (Debian's package) on a free port.
redis:
	@command -v redis-server >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q redis-server; }

# bench.scale drives the proxy with hey (Go: the load generator must not take the proxy's CPU).
hey:
	@command -v hey >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q hey; }

run: venv embedder engine model
	bash deploy/run-local.sh

test: venv serve-venv embedder engine model quant helm redis
	$(VENV)/bin/ruff check cache_proxy cache_tools engine tests bench
	$(VENV)/bin/ruff format --check cache_proxy cache_tools engine tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest
	$(SERVE_VENV)/bin/pytest -q $(SERVE_TESTS)

# The inner loop: lint, types and the tests that start no server or engine (~2 min); `make test`
# stays the full suite (CI).
check: venv embedder redis helm
	$(VENV)/bin/ruff check cache_proxy cache_tools engine tests bench
	$(VENV)/bin/ruff format --check cache_proxy cache_tools engine tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -m "not e2e and not engine" -q

bench: venv serve-venv embedder engine model quant quant-small hey
	$(VENV)/bin/python -m bench.footprint --venv $(SERVE_VENV)
	$(VENV)/bin/python -m bench.scale
	$(VENV)/bin/python -m bench.index_recall
	$(VENV)/bin/python -m bench.embed_vs_hit
	$(VENV)/bin/python -m bench.online_latency
	$(VENV)/bin/python -m bench.online_replay
	$(VENV)/bin/python -m bench.engine_batching
	$(VENV)/bin/python -m bench.engine_quant
	$(VENV)/bin/python -m bench.engine_quant --family small

clean:
	rm -rf build $(VENV) $(SERVE_VENV) $(ENGINE_VENV) $(QUANT_VENV)

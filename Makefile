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
TOOLS_DIR := build/tools
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test check venv engine model quant helm redis hey lint typecheck bench clean schema

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch==2.13.0
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

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
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(MODEL_DIR) --out $(QMODEL_DIR)
$(GPTQ_DIR)/config.json: $(QUANT_VENV)/.installed $(MODEL_DIR)/config.json engine/quantize.py engine/calibration.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(MODEL_DIR) --out $(GPTQ_DIR) --method gptq
$(AWQ_DIR)/config.json: $(QUANT_VENV)/.installed $(MODEL_DIR)/config.json engine/quantize.py engine/calibration.py
	$(QUANT_VENV)/bin/python -m engine.quantize --model $(MODEL_DIR) --out $(AWQ_DIR) --method awq

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

run: venv engine model
	bash deploy/run-local.sh

test: venv engine model quant helm redis
	$(VENV)/bin/ruff check cache_proxy engine tests bench
	$(VENV)/bin/ruff format --check cache_proxy engine tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

# The inner loop: lint, types and the tests that start no server or engine (~2 min); `make test`
# stays the full suite (CI).
check: venv redis helm
	$(VENV)/bin/ruff check cache_proxy engine tests bench
	$(VENV)/bin/ruff format --check cache_proxy engine tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -m "not e2e and not engine" -q

bench: venv engine model quant hey
	$(VENV)/bin/python -m bench.scale
	$(VENV)/bin/python -m bench.index_recall
	$(VENV)/bin/python -m bench.embed_vs_hit
	$(VENV)/bin/python -m bench.engine_batching
	$(VENV)/bin/python -m bench.engine_quant

clean:
	rm -rf build $(VENV) $(ENGINE_VENV) $(QUANT_VENV)

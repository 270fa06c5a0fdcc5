{{/* ---------------------------------------------------------------------------------------
Proxy container and its config volume (sidecar and standalone).
--------------------------------------------------------------------------------------- */}}

{{- define "vsc.proxyContainer" -}}
- name: proxy
  image: {{ include "vsc.proxyImage" . }}
  imagePullPolicy: {{ .Values.proxy.image.pullPolicy }}
  command: ["cache-proxy"]
  args:
    - --log-level
    - {{ .Values.proxy.logLevel }}
    - serve
    - --config
    - /etc/cache-proxy/config.yaml
    - --host
    - 0.0.0.0
    - --port
    - {{ .Values.proxy.port | quote }}
    {{- with .Values.proxy.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- $env := include "vsc.proxySecretEnv" . | trim }}
  {{- if or $env .Values.proxy.env }}
  env:
    {{- with $env }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- range $name, $value := .Values.proxy.env }}
    - name: {{ $name }}
      value: {{ $value | quote }}
    {{- end }}
  {{- end }}
  ports:
    - name: http
      containerPort: {{ .Values.proxy.port }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: http
    periodSeconds: {{ .Values.proxy.probes.startup.periodSeconds }}
    failureThreshold: {{ .Values.proxy.probes.startup.failureThreshold }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    periodSeconds: {{ .Values.proxy.probes.readiness.periodSeconds }}
    failureThreshold: {{ .Values.proxy.probes.readiness.failureThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    periodSeconds: {{ .Values.proxy.probes.liveness.periodSeconds }}
    failureThreshold: {{ .Values.proxy.probes.liveness.failureThreshold }}
  {{- with .Values.proxy.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.proxy.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (include "vsc.preStopSleep" (int64 .Values.proxy.drain.preStopSeconds) | trim) }}
  # Keeps serving while the endpoint leaves Services and the ingress; then SIGTERM
  # (proxy.drain.preStopSeconds).
  lifecycle:
    {{- . | nindent 4 }}
  {{- end }}
  volumeMounts:
    # A directory mount (not subPath): kubelet then updates the file when the ConfigMap
    # changes and the proxy hot-reloads `tenants:`.
    - name: proxy-config
      mountPath: /etc/cache-proxy
      readOnly: true
    {{- if .Values.proxy.verifiers.existingClaim }}
    - name: verifiers
      mountPath: {{ .Values.proxy.verifiers.mountPath }}
      readOnly: true
    {{- end }}
    {{- with (include "vsc.snapshotPath" .) }}
    # cache.snapshot_path's directory: the embedded cache survives restarts (proxy.snapshot).
    - name: cache-snapshot
      mountPath: {{ dir . }}
    {{- end }}
    {{- with .Values.proxy.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{- define "vsc.proxyVolumes" -}}
- name: proxy-config
  configMap:
    name: {{ include "vsc.fullname" . }}
{{- with .Values.proxy.verifiers.existingClaim }}
- name: verifiers
  persistentVolumeClaim:
    claimName: {{ . }}
    readOnly: true
{{- end }}
{{- if include "vsc.snapshotPath" . }}
- name: cache-snapshot
{{- with .Values.proxy.snapshot.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ . }}
{{- else }}
  # Survives container restarts, not pod deletion: set proxy.snapshot.existingClaim for that.
  emptyDir: {}
{{- end }}
{{- end }}
{{- with .Values.proxy.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod annotations that roll the pod when restart-requiring config changes. */}}
{{- define "vsc.podChecksums" -}}
checksum/config: {{ include "vsc.configChecksum" . }}
{{- if .Values.secrets.create }}
checksum/secret: {{ toYaml .Values.secrets.data | sha256sum }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------
Graceful drain (proxy.drain, proxy.config.server.shutdown_grace_s): preStop, then SIGTERM, then
the proxy's shutdown grace; terminationGracePeriodSeconds must cover all of it.
--------------------------------------------------------------------------------------- */}}

{{/* A preStop hook that sleeps N seconds (nothing for 0). exec python3, which both images have:
the native `sleep` action needs Kubernetes 1.29+ and the chart supports 1.26. */}}
{{- define "vsc.preStopSleep" -}}
{{- if gt (int64 .) 0 }}
preStop:
  exec:
    command: ["python3", "-c", {{ printf "import time; time.sleep(%d)" (int64 .) | quote }}]
{{- end }}
{{- end }}

{{/* ceil(proxy.config.server.shutdown_grace_s), in whole seconds. */}}
{{- define "vsc.shutdownGraceSeconds" -}}
{{- $grace := dig "server" "shutdown_grace_s" 20 .Values.proxy.config }}
{{- if kindIs "invalid" $grace }}{{ $grace = 20 }}{{ end }}
{{- int64 (ceil $grace) }}
{{- end }}

{{/* Seconds a pod running the proxy needs to drain: preStop + shutdown grace + a 5 s margin. */}}
{{- define "vsc.proxyDrainSeconds" -}}
{{- add (int64 .Values.proxy.drain.preStopSeconds) (include "vsc.shutdownGraceSeconds" . | int64) 5 }}
{{- end }}

{{/* The standalone proxy pod: proxy.terminationGracePeriodSeconds (refused below the drain
need) or the need itself. */}}
{{- define "vsc.proxyPodGraceSeconds" -}}
{{- $need := include "vsc.proxyDrainSeconds" . | int64 }}
{{- $set := .Values.proxy.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}{{ $need }}
{{- else if lt (int64 $set) $need }}
{{- fail (printf "proxy.terminationGracePeriodSeconds %d is below the proxy's drain: proxy.drain.preStopSeconds %d + proxy.config.server.shutdown_grace_s %s + 5 s margin = %d; raise it or leave it null (computed)" (int64 $set) (int64 .Values.proxy.drain.preStopSeconds) (include "vsc.shutdownGraceSeconds" .) $need) }}
{{- else }}{{ int64 $set }}
{{- end }}
{{- end }}

{{/* Sidecar: how long the engine container waits before its SIGTERM, so it keeps answering
the proxy until the proxy's open requests have finished (preStop + shutdown grace). */}}
{{- define "vsc.engineDrainSeconds" -}}
{{- add (int64 .Values.proxy.drain.preStopSeconds) (include "vsc.shutdownGraceSeconds" . | int64) }}
{{- end }}

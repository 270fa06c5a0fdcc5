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

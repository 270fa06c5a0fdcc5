{{/* ---------------------------------------------------------------------------------------
Engine pod parts shared by the sidecar Deployment and the standalone engine Deployment.
--------------------------------------------------------------------------------------- */}}

{{- define "vsc.engineContainer" -}}
- name: engine
  image: {{ include "vsc.engineImage" . }}
  imagePullPolicy: {{ .Values.engine.image.pullPolicy }}
  command:
    {{- toYaml .Values.engine.command | nindent 4 }}
  args:
    {{- include "vsc.engineArgs" . | trim | nindent 4 }}
  env:
    {{- range $name, $value := (include "vsc.engineEnvMap" . | fromYaml) }}
    - name: {{ $name }}
      value: {{ $value | quote }}
    {{- end }}
    {{- if .Values.engine.hfTokenSecret.name }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ .Values.engine.hfTokenSecret.name }}
          key: {{ .Values.engine.hfTokenSecret.key }}
    {{- end }}
    {{- if .Values.engine.apiKeySecretKey }}
    - name: VLLM_API_KEY
      valueFrom:
        secretKeyRef:
          name: {{ include "vsc.secretName" . }}
          key: {{ .Values.engine.apiKeySecretKey }}
    {{- end }}
  ports:
    - name: engine
      containerPort: {{ int64 .Values.engine.config.port }}
      protocol: TCP
  startupProbe:
    {{- include "vsc.engineProbe" (list . .Values.engine.probes.startup) | trim | nindent 4 }}
  readinessProbe:
    {{- include "vsc.engineProbe" (list . .Values.engine.probes.readiness) | trim | nindent 4 }}
  livenessProbe:
    {{- include "vsc.engineProbe" (list . .Values.engine.probes.liveness) | trim | nindent 4 }}
  resources:
    {{- include "vsc.engineResources" . | trim | nindent 4 }}
  {{- with .Values.engine.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if eq .Values.topology "sidecar" }}
  {{- with (include "vsc.preStopSleep" (include "vsc.engineDrainSeconds" . | int64) | trim) }}
  # The proxy beside it drains first (proxy.drain.preStopSeconds, then
  # proxy.config.server.shutdown_grace_s): the engine answers its open requests until then.
  lifecycle:
    {{- . | nindent 4 }}
  {{- end }}
  {{- end }}
  volumeMounts:
    - name: models
      mountPath: {{ .Values.engine.modelStorage.mountPath }}
    {{- if .Values.engine.shm.enabled }}
    - name: dshm
      mountPath: /dev/shm
    {{- end }}
{{- end }}

{{/* engine.resources plus nvidia.com/gpu (requests = limits) when gpu.count > 0. */}}
{{- define "vsc.engineResources" -}}
{{- $res := deepCopy (.Values.engine.resources | default dict) }}
{{- $count := int64 .Values.engine.gpu.count }}
{{- if gt $count 0 }}
{{- $gpu := dict .Values.engine.gpu.resourceName ($count | toString) }}
{{- $_ := set $res "limits" (merge (get $res "limits" | default dict) $gpu) }}
{{- $_ := set $res "requests" (merge (get $res "requests" | default dict) $gpu) }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* Pod-level scheduling for GPU nodes and the engine volumes. */}}
{{- define "vsc.enginePodScheduling" -}}
{{- with .Values.engine.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- $selector := deepCopy (.Values.engine.nodeSelector | default dict) }}
{{- if .Values.engine.gpu.product }}
{{- $_ := set $selector "nvidia.com/gpu.product" .Values.engine.gpu.product }}
{{- end }}
{{- with $selector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.engine.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.engine.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $grace := int64 .Values.engine.terminationGracePeriodSeconds }}
{{- if eq .Values.topology "sidecar" }}
{{- /* The proxy drains in this pod too: the larger of the engine's and the proxy's need. */}}
{{- $grace = max $grace (include "vsc.proxyDrainSeconds" . | int64) }}
{{- end }}
terminationGracePeriodSeconds: {{ $grace }}
{{- end }}

{{- define "vsc.engineInitContainers" -}}
{{- $copy := .Values.engine.modelStorage.initCopy }}
{{- if $copy.enabled }}
- name: copy-model
  image: {{ $copy.image }}
  command:
    {{- toYaml $copy.command | nindent 4 }}
  {{- with $copy.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $copy.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: models
      mountPath: {{ .Values.engine.modelStorage.mountPath }}
{{- end }}
{{- end }}

{{- define "vsc.engineVolumes" -}}
{{- $ms := .Values.engine.modelStorage }}
- name: models
{{- if eq $ms.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ default (printf "%s-models" (include "vsc.fullname" .)) $ms.pvc.existingClaim }}
{{- else if eq $ms.type "hostPath" }}
  hostPath:
    path: {{ $ms.hostPath.path }}
    type: {{ $ms.hostPath.type }}
{{- else }}
  emptyDir:
    {{- with $ms.emptyDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}
{{- if .Values.engine.shm.enabled }}
- name: dshm
  emptyDir:
    medium: Memory
    {{- with .Values.engine.shm.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}
{{- end }}

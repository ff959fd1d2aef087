{{/*
Named templates. The two meant for users:

  policy-sidecar.container  the sidecar container (one list item for a pod's `containers:`)
  policy-sidecar.volumes    its volumes (list items for the pod's `volumes:`)

Both take a context with .Values (this chart's values), .Release and .Chart, i.e. this chart's
root context `.`, or, from a parent chart that has this chart as a dependency:

  {{- $sidecar := dict "Values" (index .Values "policy-sidecar") "Release" .Release "Chart" (dict "Name" "policy-sidecar" "AppVersion" "0.1.0") }}
  containers:
    - name: app
      ...
    {{- include "policy-sidecar.container" $sidecar | nindent 4 }}
  volumes:
    {{- include "policy-sidecar.volumes" $sidecar | nindent 4 }}
*/}}

{{- define "policy-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "policy-sidecar.fullname" -}}
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

{{- define "policy-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "policy-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "policy-sidecar.labels" -}}
{{ include "policy-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | default "Helm" }}
{{- if .Chart.Version }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the policy: the user's existing one, or the one this chart renders. */}}
{{- define "policy-sidecar.configMapName" -}}
{{- if .Values.policy.existingConfigMap }}
{{- .Values.policy.existingConfigMap }}
{{- else }}
{{- printf "%s-policy" (include "policy-sidecar.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The policy text from policy.inline or policy.file, or with neither (nor existingConfigMap)
the chart's bundled files/policy.yaml, so a first install with no values works. Several sources
are an error: which one would win is not obvious. */}}
{{- define "policy-sidecar.policyText" -}}
{{- $sources := 0 }}
{{- if .Values.policy.inline }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.policy.file }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.policy.existingConfigMap }}{{ $sources = add1 $sources }}{{ end }}
{{- if gt (int $sources) 1 }}
{{- fail "policy-sidecar: set at most one of policy.inline, policy.file, policy.existingConfigMap (none: the chart's files/policy.yaml)" }}
{{- end }}
{{- if .Values.policy.inline }}
{{- .Values.policy.inline }}
{{- else }}
{{- $file := .Values.policy.file | default "files/policy.yaml" }}
{{- $text := .Files.Get $file }}
{{- if not $text }}
{{- fail (printf "policy-sidecar: policy.file %q is missing or empty in the chart" $file) }}
{{- end }}
{{- $text }}
{{- end }}
{{- end }}

{{- define "policy-sidecar.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail "policy-sidecar: image.tag must be a version, not latest" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "policy-sidecar.env" -}}
- name: SIDECAR_POLICY
  value: {{ printf "%s/%s" (trimSuffix "/" .Values.policy.mountPath) .Values.policy.key | quote }}
- name: SIDECAR_HOST
  value: "0.0.0.0"
- name: SIDECAR_PORT
  value: {{ .Values.port | quote }}
{{- if .Values.admin.port }}
- name: SIDECAR_ADMIN_HOST
  value: {{ .Values.admin.host | quote }}
- name: SIDECAR_ADMIN_PORT
  value: {{ .Values.admin.port | quote }}
{{- end }}
{{- if .Values.admin.tokenSecret.name }}
- name: SIDECAR_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.admin.tokenSecret.name | quote }}
      key: {{ .Values.admin.tokenSecret.key | quote }}
{{- end }}
- name: SIDECAR_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: SIDECAR_LOG_REQUESTS
  value: {{ ternary "1" "0" .Values.logRequests | quote }}
- name: SIDECAR_WATCH
  value: {{ ternary "1" "0" .Values.policy.watch | quote }}
- name: SIDECAR_WATCH_POLLING
  value: {{ ternary "1" "0" .Values.policy.watchPolling | quote }}
- name: SIDECAR_DRAIN_DELAY
  value: {{ .Values.shutdown.drainDelaySeconds | quote }}
- name: SIDECAR_GRACE_SECONDS
  value: {{ .Values.shutdown.graceSeconds | quote }}
- name: TMPDIR
  value: /tmp
- name: TIKTOKEN_CACHE_DIR
  value: ""
{{- range .Values.providerKeys }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .secretKey | quote }}
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | quote }}
      key: {{ .Values.redis.secretKey | quote }}
{{- else if .Values.redis.url }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- if .Values.redis.sentinelPasswordSecret }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.sentinelPasswordSecret | quote }}
      key: {{ .Values.redis.sentinelPasswordKey | quote }}
{{- end }}
{{- if .Values.otel.enabled }}
- name: OTEL_SERVICE_NAME
  value: {{ .Values.otel.serviceName | default (include "policy-sidecar.fullname" .) | quote }}
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.protocol }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.tracesSampler }}
- name: OTEL_TRACES_SAMPLER
  value: {{ . | quote }}
{{- end }}
{{- with .Values.otel.tracesSamplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- if .Values.otel.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.otel.headersSecret.name | quote }}
      key: {{ .Values.otel.headersSecret.key | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The sidecar container, as one item of a pod's `containers:` list. */}}
{{- define "policy-sidecar.container" -}}
- name: policy-sidecar
  image: {{ include "policy-sidecar.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args: ["serve"]
  env:
    {{- include "policy-sidecar.env" . | nindent 4 }}
  ports:
    - name: http
      containerPort: {{ .Values.port }}
      protocol: TCP
    {{- if .Values.admin.port }}
    - name: admin
      containerPort: {{ .Values.admin.port }}
      protocol: TCP
    {{- end }}
  {{- if .Values.startupProbe.enabled }}
  startupProbe:
    httpGet:
      path: /healthz
      port: http
    periodSeconds: {{ .Values.startupProbe.periodSeconds }}
    failureThreshold: {{ .Values.startupProbe.failureThreshold }}
  {{- end }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: http
    periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
    successThreshold: {{ .Values.readinessProbe.successThreshold }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: http
    initialDelaySeconds: {{ .Values.livenessProbe.initialDelaySeconds }}
    periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
  resources:
    {{- toYaml .Values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    # A directory mount, never subPath: kubelet updates it by swapping the ..data symlink,
    # which the sidecar's directory watcher sees. subPath mounts never receive updates.
    - name: policy-sidecar-policy
      mountPath: {{ .Values.policy.mountPath | quote }}
      readOnly: true
    - name: policy-sidecar-tmp
      mountPath: /tmp
    {{- if .Values.clientKeys.secretName }}
    # clients: keys file, a directory mount too so Secret updates arrive
    - name: policy-sidecar-client-keys
      mountPath: {{ .Values.clientKeys.mountPath | quote }}
      readOnly: true
    {{- end }}
    {{- if .Values.redis.tls.secretName }}
    # Redis TLS: CA and client certificate (policy redis: tls: block)
    - name: policy-sidecar-redis-tls
      mountPath: {{ .Values.redis.tls.mountPath | quote }}
      readOnly: true
    {{- end }}
{{- end }}

{{/* The sidecar's volumes, as items of a pod's `volumes:` list. */}}
{{- define "policy-sidecar.volumes" -}}
- name: policy-sidecar-policy
  configMap:
    name: {{ include "policy-sidecar.configMapName" . | quote }}
    items:
      - key: {{ .Values.policy.key | quote }}
        path: {{ .Values.policy.key | quote }}
- name: policy-sidecar-tmp
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.tmp.sizeLimit }}
{{- if .Values.clientKeys.secretName }}
- name: policy-sidecar-client-keys
  secret:
    secretName: {{ .Values.clientKeys.secretName | quote }}
{{- end }}
{{- if .Values.redis.tls.secretName }}
- name: policy-sidecar-redis-tls
  secret:
    secretName: {{ .Values.redis.tls.secretName | quote }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds that covers the drain delay, the grace period and exit. */}}
{{- define "policy-sidecar.terminationGracePeriodSeconds" -}}
{{- add (int (ceil .Values.shutdown.drainDelaySeconds)) (int (ceil .Values.shutdown.graceSeconds)) 5 }}
{{- end }}

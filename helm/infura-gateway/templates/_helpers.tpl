{{- define "infura-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "infura-gateway.fullname" -}}
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

{{- define "infura-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "infura-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infura-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "infura-gateway.labels" -}}
helm.sh/chart: {{ include "infura-gateway.chart" . }}
{{ include "infura-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: infura-gateway
{{- end }}

{{- define "infura-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "infura-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "infura-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the Infura credentials, empty when none. */}}
{{- define "infura-gateway.secretName" -}}
{{- if .Values.infura.existingSecret }}
{{- .Values.infura.existingSecret }}
{{- else if .Values.infura.projectId }}
{{- include "infura-gateway.fullname" . }}
{{- end }}
{{- end }}

{{/*
Container securityContext shared by the gateway and the test pod: the
restricted Pod Security Standard. Not configurable on purpose.
*/}}
{{- define "infura-gateway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "infura-gateway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Cross-field checks the JSON schema cannot express. */}}
{{- define "infura-gateway.validate" -}}
{{- $l := .Values.lifecycle }}
{{- $needed := add $l.preStopSleepSeconds $l.drainDelaySeconds $l.shutdownTimeoutSeconds }}
{{- if le (int $l.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainDelaySeconds + shutdownTimeoutSeconds (%d), or the kubelet kills pods before websockets close" (int $l.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.targetMemoryUtilizationPercentage)) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.infura.projectSecret (not .Values.infura.projectId) }}
{{- fail "infura.projectSecret is set without infura.projectId" }}
{{- end }}
{{- if and .Values.infura.existingSecret .Values.infura.projectId }}
{{- fail "set either infura.existingSecret or infura.projectId/projectSecret, not both" }}
{{- end }}
{{- end }}

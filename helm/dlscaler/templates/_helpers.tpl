{{/* Names and labels shared by every template. */}}

{{- define "dlscaler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name: the release name when it already contains the chart name (a release named
"dlscaler" gives objects named "dlscaler"), otherwise release-chart. 63 characters at most
(DNS label).
*/}}
{{- define "dlscaler.fullname" -}}
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

{{- define "dlscaler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dlscaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dlscaler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dlscaler.labels" -}}
helm.sh/chart: {{ include "dlscaler.chart" . }}
{{ include "dlscaler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dlscaler
{{- end }}

{{- define "dlscaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dlscaler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false: name the existing ServiceAccount the controller runs as" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest when a digest is set, else repository:tag. */}}
{{- define "dlscaler.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Objects the controller reads and writes in the release namespace. */}}
{{- define "dlscaler.leaseName" -}}
{{- if .Values.leaderElection.leaseName }}
{{- .Values.leaderElection.leaseName }}
{{- else }}
{{- printf "%s-leader" (include "dlscaler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "dlscaler.policyConfigMapName" -}}
{{- printf "%s-policy" (include "dlscaler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dlscaler.stateConfigMapName" -}}
{{- if .Values.controller.stateConfigMapName }}
{{- .Values.controller.stateConfigMapName }}
{{- else }}
{{- printf "%s-state" (include "dlscaler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The finished-jobs records (controller/runtimes.py): the state ConfigMap's name plus
"-runtimes", exactly as the controller derives it (not truncated: a ConfigMap name may be
253 characters).
*/}}
{{- define "dlscaler.runtimesConfigMapName" -}}
{{- printf "%s-runtimes" (include "dlscaler.stateConfigMapName" .) }}
{{- end }}

{{/* Names, labels and the image reference shared by every template. */}}

{{- define "perennial.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: `perennial` for a release called perennial. */}}
{{- define "perennial.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "perennial.selectorLabels" -}}
app.kubernetes.io/name: {{ include "perennial.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The standard app.kubernetes.io labels on every object. */}}
{{- define "perennial.labels" -}}
{{ include "perennial.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: perennial
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Argo CD applies lower waves first: CRDs (-10, in templates/crds/), then the operator (-5),
     then the resources users keep in the same Application (wave 0 by default). */}}
{{- define "perennial.operatorWave" -}}
argocd.argoproj.io/sync-wave: "-5"
{{- end }}

{{- define "perennial.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "perennial.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag (tag defaults to appVersion) or repository@digest. */}}
{{- define "perennial.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding the Prometheus endpoints file: the chart's, or the user's own; empty: none. */}}
{{- define "perennial.prometheusEndpointsSecret" -}}
{{- if .Values.prometheus.existingEndpointsSecret }}
{{- .Values.prometheus.existingEndpointsSecret }}
{{- else if .Values.prometheus.endpoints }}
{{- printf "%s-prometheus-endpoints" (include "perennial.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Names do not derive from .Chart.Name: as a dependency the chart is aliased
(rabbitmqOperator), and an alias with capitals would make invalid object names.
*/}}
{{- define "rmqop.fullname" -}}
{{- default (printf "%s-rabbitmq-cluster-operator" .Release.Name) .Values.fullnameOverride | lower | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Cluster-scoped objects carry the namespace too: one release per namespace may exist. */}}
{{- define "rmqop.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "rmqop.fullname" .) | lower | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rmqop.selectorLabels" -}}
app.kubernetes.io/name: rabbitmq-cluster-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rmqop.labels" -}}
{{ include "rmqop.selectorLabels" . }}
app.kubernetes.io/component: rabbitmq-operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "rmqop.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* A file copied from the operator's Go module by `make chart-deps`, decoded. */}}
{{- define "rmqop.moduleFile" -}}
{{- $f := .ctx.Files.Get .file -}}
{{- if not $f -}}
{{- fail (printf "charts/rabbitmq-cluster-operator/%s is missing: run `make chart-deps` (copies the CRD and RBAC from the operator's Go module %s@%s)" .file (index .ctx.Chart.Annotations "personscore.io/go-module") (index .ctx.Chart.Annotations "personscore.io/go-module-version")) -}}
{{- end -}}
{{- $f -}}
{{- end -}}

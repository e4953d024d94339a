{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "svc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name when it already contains the chart name. */}}
{{- define "svc.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "svc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object of the release. */}}
{{- define "svc.commonLabels" -}}
helm.sh/chart: {{ include "svc.chart" . }}
app.kubernetes.io/name: {{ include "svc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: personscore
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector of the service's own pods (never matches the MongoDB pods). */}}
{{- define "svc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "svc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api
{{- end -}}

{{- define "svc.labels" -}}
{{ include "svc.commonLabels" . }}
app.kubernetes.io/component: api
{{- end -}}

{{/* MongoDB StatefulSet names and labels. */}}
{{- define "svc.mongodb.fullname" -}}
{{- printf "%s-mongodb" (include "svc.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "svc.mongodb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "svc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mongodb
{{- end -}}

{{- define "svc.mongodb.labels" -}}
{{ include "svc.commonLabels" . }}
app.kubernetes.io/component: mongodb
{{- end -}}

{{- define "svc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "svc.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "svc.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Go duration ("10s", "1m30s", "500ms", "2h") to whole seconds, rounded up.
Used to prove terminationGracePeriodSeconds exceeds the service's shutdown deadline.
*/}}
{{- define "svc.durationSeconds" -}}
{{- $d := toString . -}}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]+)?(h|m|s|ms|us|µs|ns))+$" $d) -}}
{{- fail (printf "%q is not a Go duration (e.g. 10s, 1m30s)" $d) -}}
{{- end -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(h|ms|us|µs|ns|m|s)" $d -1 -}}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . | float64 -}}
{{- $unit := trimPrefix (regexFind "^[0-9]+(\\.[0-9]+)?" .) . -}}
{{- if eq $unit "h" }}{{ $total = addf $total (mulf $num 3600) }}
{{- else if eq $unit "m" }}{{ $total = addf $total (mulf $num 60) }}
{{- else if eq $unit "s" }}{{ $total = addf $total $num }}
{{- else if eq $unit "ms" }}{{ $total = addf $total (divf $num 1000) }}
{{- else }}{{ $total = addf $total (divf $num 1000000) }}
{{- end -}}
{{- end -}}
{{- ceil $total | int -}}
{{- end -}}

{{/* Fails the render when the grace period does not cover preStop + the shutdown deadline. */}}
{{- define "svc.validateGrace" -}}
{{- $shutdown := include "svc.durationSeconds" .Values.config.shutdownTimeout | int -}}
{{- $preStop := int .Values.lifecycle.preStopSleepSeconds -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- if le $grace (add $shutdown $preStop) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds (%d) + config.shutdownTimeout (%ds)" $grace $preStop $shutdown) -}}
{{- end -}}
{{- end -}}

{{/* ---------------- RabbitMQ ---------------- */}}

{{- define "svc.rabbitmq.mode" -}}
{{- if .Values.rabbitmq.external.existingSecret -}}external
{{- else if .Values.rabbitmq.topologyOperator.enabled -}}topology
{{- else -}}operator
{{- end -}}
{{- end -}}

{{- define "svc.rabbitmq.userName" -}}
{{- printf "%s-amqp" (include "svc.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret holding username/password (and connection_string) for AMQP. */}}
{{- define "svc.rabbitmq.credentialsSecret" -}}
{{- if eq (include "svc.rabbitmq.mode" .) "topology" -}}
{{- include "svc.rabbitmq.userName" . -}}
{{- else -}}
{{- printf "%s-default-user" .Values.rabbitmq.clusterName -}}
{{- end -}}
{{- end -}}

{{- define "svc.rabbitmq.scheme" -}}
{{- if .Values.rabbitmq.tls.enabled }}amqps{{ else }}amqp{{ end -}}
{{- end -}}

{{- define "svc.rabbitmq.port" -}}
{{- if .Values.rabbitmq.tls.enabled }}5671{{ else }}5672{{ end -}}
{{- end -}}

{{/*
AMQP_URL: one URL per broker node (the operator's StatefulSet pods behind the headless
"<cluster>-nodes" Service), credentials injected with dependent env var expansion.
The operator-generated password is URL-safe base64, so it needs no escaping.
*/}}
{{- define "svc.rabbitmq.urls" -}}
{{- $urls := list -}}
{{- $c := .Values.rabbitmq.clusterName -}}
{{- $vhost := .Values.rabbitmq.vhost | default "/" -}}
{{- $path := ternary "/" (printf "/%s" (urlquery $vhost)) (eq $vhost "/") -}}
{{- range $i := until (int .Values.rabbitmq.replicas) -}}
{{- $urls = append $urls (printf "%s://$(AMQP_USERNAME):$(AMQP_PASSWORD)@%s-server-%d.%s-nodes.%s.svc:%s%s" (include "svc.rabbitmq.scheme" $) $c $i $c $.Release.Namespace (include "svc.rabbitmq.port" $) $path) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* ---------------- MongoDB ---------------- */}}

{{- define "svc.mongodb.secretName" -}}
{{- if .Values.mongodb.external.existingSecret -}}
{{- .Values.mongodb.external.existingSecret -}}
{{- else if .Values.mongodb.auth.existingSecret -}}
{{- .Values.mongodb.auth.existingSecret -}}
{{- else -}}
{{- include "svc.mongodb.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Keep a generated password stable across upgrades by reading it back from the cluster. */}}
{{- define "svc.secretValue" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing (index ($existing.data | default dict) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int (default 32 .length)) -}}
{{- end -}}
{{- end -}}

{{/* Pod/container security context meeting the "restricted" Pod Security Standard. */}}
{{- define "svc.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}


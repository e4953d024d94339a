{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "common.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name when it already contains the chart name. */}}
{{- define "common.fullname" -}}
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

{{- define "common.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object of the release. */}}
{{- define "common.commonLabels" -}}
helm.sh/chart: {{ include "common.chart" . }}
app.kubernetes.io/name: {{ include "common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: personscore
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector of the service's own pods (never matches the MongoDB pods). */}}
{{- define "common.selectorLabels" -}}
app.kubernetes.io/name: {{ include "common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: api
{{- end -}}

{{- define "common.labels" -}}
{{ include "common.commonLabels" . }}
app.kubernetes.io/component: api
{{- end -}}

{{/* MongoDB StatefulSet names and labels. */}}
{{- define "common.mongodb.fullname" -}}
{{- printf "%s-mongodb" (include "common.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "common.mongodb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mongodb
{{- end -}}

{{- define "common.mongodb.labels" -}}
{{ include "common.commonLabels" . }}
app.kubernetes.io/component: mongodb
{{- end -}}

{{- define "common.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "common.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "common.image" -}}
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
{{- define "common.durationSeconds" -}}
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
{{- define "common.validateGrace" -}}
{{- $shutdown := include "common.durationSeconds" .Values.config.shutdownTimeout | int -}}
{{- $preStop := int .Values.lifecycle.preStopSleepSeconds -}}
{{- $grace := int .Values.terminationGracePeriodSeconds -}}
{{- if le $grace (add $shutdown $preStop) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds (%d) + config.shutdownTimeout (%ds)" $grace $preStop $shutdown) -}}
{{- end -}}
{{- end -}}

{{/* ---------------- RabbitMQ ---------------- */}}

{{- define "common.rabbitmq.mode" -}}
{{- if .Values.rabbitmq.external.existingSecret -}}external
{{- else if .Values.rabbitmq.topologyOperator.enabled -}}topology
{{- else -}}operator
{{- end -}}
{{- end -}}

{{- define "common.rabbitmq.userName" -}}
{{- printf "%s-amqp" (include "common.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Secret holding username/password (and connection_string) for AMQP. */}}
{{- define "common.rabbitmq.credentialsSecret" -}}
{{- if eq (include "common.rabbitmq.mode" .) "topology" -}}
{{- include "common.rabbitmq.userName" . -}}
{{- else -}}
{{- printf "%s-default-user" .Values.rabbitmq.clusterName -}}
{{- end -}}
{{- end -}}

{{- define "common.rabbitmq.scheme" -}}
{{- if .Values.rabbitmq.tls.enabled }}amqps{{ else }}amqp{{ end -}}
{{- end -}}

{{- define "common.rabbitmq.port" -}}
{{- if .Values.rabbitmq.tls.enabled }}5671{{ else }}5672{{ end -}}
{{- end -}}

{{/* Namespace of the RabbitmqCluster: rabbitmq.clusterNamespace, else the release's. */}}
{{- define "common.rabbitmq.namespace" -}}
{{- default .Release.Namespace .Values.rabbitmq.clusterNamespace -}}
{{- end -}}

{{/*
Fails the render for a broker reference that cannot work: a release creates its
RabbitmqCluster in its own namespace, and a pod cannot read the operator's default-user
Secret from another namespace (use the topology operator's own user, or an external Secret).
*/}}
{{- define "common.rabbitmq.validate" -}}
{{- $ns := include "common.rabbitmq.namespace" . -}}
{{- if ne $ns .Release.Namespace -}}
{{- if .Values.rabbitmq.createCluster -}}
{{- fail (printf "rabbitmq.createCluster creates the RabbitmqCluster in the release namespace %s: leave rabbitmq.clusterNamespace (%s) empty" .Release.Namespace $ns) -}}
{{- end -}}
{{- if eq (include "common.rabbitmq.mode" .) "operator" -}}
{{- fail (printf "the RabbitmqCluster is in namespace %s: the operator's default-user Secret cannot be read from namespace %s. Set rabbitmq.topologyOperator.enabled=true (the cluster needs rabbitmq.cluster.topologyAllowedNamespaces) or rabbitmq.external.existingSecret" $ns .Release.Namespace) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
AMQP_URL: the RabbitmqCluster's client Service, which load-balances over the ready broker
nodes (whatever their number), in the cluster's namespace; credentials injected with
dependent env var expansion. The operator-generated password is URL-safe base64, so it
needs no escaping.
*/}}
{{- define "common.rabbitmq.urls" -}}
{{- $vhost := .Values.rabbitmq.vhost | default "/" -}}
{{- $path := ternary "/" (printf "/%s" (urlquery $vhost)) (eq $vhost "/") -}}
{{- printf "%s://$(AMQP_USERNAME):$(AMQP_PASSWORD)@%s.%s.svc:%s%s" (include "common.rabbitmq.scheme" .) .Values.rabbitmq.clusterName (include "common.rabbitmq.namespace" .) (include "common.rabbitmq.port" .) $path -}}
{{- end -}}

{{/* ---------------- MongoDB ---------------- */}}

{{/* True when the StatefulSet runs localmongo, the MongoDB stand-in of the local node. */}}
{{- define "common.mongodb.isLocalmongo" -}}
{{- if eq .Values.mongodb.server "localmongo" }}true{{ end -}}
{{- end -}}

{{/* MONGO_URI of the in-cluster server: with the root credentials for mongod, none for localmongo (it has no authentication). */}}
{{- define "common.mongodb.uri" -}}
{{- $host := printf "%s.%s.svc:27017" (include "common.mongodb.fullname" .) .Release.Namespace -}}
{{- if include "common.mongodb.isLocalmongo" . -}}
{{- printf "mongodb://%s/" $host -}}
{{- else -}}
{{- printf "mongodb://$(MONGO_USERNAME):$(MONGO_PASSWORD)@%s/?authSource=admin" $host -}}
{{- end -}}
{{- end -}}

{{- define "common.mongodb.secretName" -}}
{{- if .Values.mongodb.external.existingSecret -}}
{{- .Values.mongodb.external.existingSecret -}}
{{- else if .Values.mongodb.auth.existingSecret -}}
{{- .Values.mongodb.auth.existingSecret -}}
{{- else -}}
{{- include "common.mongodb.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
A generated secret value, stable across upgrades: read back from the cluster (lookup) when
the Secret exists, else generated once per render and remembered (in a map under .Values
that lives only during this render), so the Secret and the checksum annotation of the pod
template see the same value and an upgrade with unchanged values rolls no pods.
*/}}
{{- define "common.secretValue" -}}
{{- $memo := .ctx.Values._generated | default dict -}}
{{- $_ := set .ctx.Values "_generated" $memo -}}
{{- $id := printf "%s/%s" .secret .key -}}
{{- if not (hasKey $memo $id) -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- if and $existing (index ($existing.data | default dict) .key) -}}
{{- $_ := set $memo $id (index $existing.data .key | b64dec) -}}
{{- else -}}
{{- $_ := set $memo $id (randAlphaNum (int (default 32 .length))) -}}
{{- end -}}
{{- end -}}
{{- index $memo $id -}}
{{- end -}}

{{/* Pod/container security context meeting the "restricted" Pod Security Standard. */}}
{{- define "common.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}


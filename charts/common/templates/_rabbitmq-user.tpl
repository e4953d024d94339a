{{/* Rendered by templates/rabbitmq-user.yaml of the person and score charts. */}}
{{- define "common.rabbitmqUser" -}}
{{- if eq (include "common.rabbitmq.mode" .) "topology" }}
{{- $secretName := include "common.rabbitmq.userName" . -}}
{{- $username := printf "%s-%s" .Release.Namespace .Chart.Name -}}
{{- $password := include "common.secretValue" (dict "ctx" . "secret" $secretName "key" "password" "length" 32) -}}
{{- $host := printf "%s.%s.svc" .Values.rabbitmq.clusterName (include "common.rabbitmq.namespace" .) -}}
# Credentials of the service's own broker user: imported by the Messaging Topology
# Operator's User below and read by the Deployment (and KEDA, for score).
apiVersion: v1
kind: Secret
metadata:
  name: {{ $secretName }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.labels" . | nindent 4 }}
type: Opaque
stringData:
  username: {{ $username | quote }}
  password: {{ $password | quote }}
  connection_string: {{ printf "%s://%s:%s@%s:%s/" (include "common.rabbitmq.scheme" .) $username $password $host (include "common.rabbitmq.port" .) | quote }}
---
apiVersion: rabbitmq.com/v1beta1
kind: User
metadata:
  name: {{ $secretName }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.labels" . | nindent 4 }}
spec:
  rabbitmqClusterReference:
    name: {{ .Values.rabbitmq.clusterName }}
    namespace: {{ include "common.rabbitmq.namespace" . }}
  # No tags: no management UI, no policymaker/administrator rights.
  tags: []
  importCredentialsSecret:
    name: {{ $secretName }}
---
apiVersion: rabbitmq.com/v1beta1
kind: Permission
metadata:
  name: {{ $secretName }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.labels" . | nindent 4 }}
spec:
  vhost: {{ .Values.rabbitmq.vhost | quote }}
  userReference:
    name: {{ $secretName }}
  permissions:
    configure: {{ .Values.rabbitmq.topologyOperator.permissions.configure | quote }}
    write: {{ .Values.rabbitmq.topologyOperator.permissions.write | quote }}
    read: {{ .Values.rabbitmq.topologyOperator.permissions.read | quote }}
  rabbitmqClusterReference:
    name: {{ .Values.rabbitmq.clusterName }}
    namespace: {{ include "common.rabbitmq.namespace" . }}
{{- end }}
{{- end -}}

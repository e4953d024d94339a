{{/* Rendered by templates/rabbitmq-cluster.yaml of the person and score charts. */}}
{{- define "common.rabbitmqCluster" -}}
{{- if and .Values.rabbitmq.createCluster (ne (include "common.rabbitmq.mode" .) "external") }}
{{- $c := .Values.rabbitmq.cluster -}}
# The broker, reconciled by the RabbitMQ Cluster Operator. Only one release creates it;
# the other service points at the same clusterName.
apiVersion: rabbitmq.com/v1beta1
kind: RabbitmqCluster
metadata:
  name: {{ .Values.rabbitmq.clusterName }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.commonLabels" . | nindent 4 }}
    app.kubernetes.io/component: broker
  annotations:
    # Keep the broker (and its data) when this release is uninstalled.
    helm.sh/resource-policy: keep
    {{- with $c.topologyAllowedNamespaces }}
    # Namespaces whose Messaging Topology Operator objects (User, Permission) may use it.
    rabbitmq.com/topology-allowed-namespaces: {{ join "," . | quote }}
    {{- end }}
spec:
  replicas: {{ .Values.rabbitmq.replicas }}
  image: {{ $c.image }}
  resources:
    {{- toYaml $c.resources | nindent 4 }}
  persistence:
    storage: {{ $c.persistence.storage }}
    {{- with $c.persistence.storageClassName }}
    storageClassName: {{ . }}
    {{- end }}
  {{- if .Values.rabbitmq.tls.enabled }}
  tls:
    secretName: {{ required "rabbitmq.cluster.tls.secretName is required with rabbitmq.tls.enabled" $c.tls.secretName }}
  {{- end }}
  {{- with $c.additionalConfig }}
  rabbitmq:
    additionalConfig: |
      {{- . | nindent 6 }}
  {{- end }}
  {{- if gt (int .Values.rabbitmq.replicas) 1 }}
  affinity:
    podAntiAffinity:
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                app.kubernetes.io/name: {{ .Values.rabbitmq.clusterName }}
  {{- end }}
{{- end }}
{{- end -}}

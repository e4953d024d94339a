{{/* Rendered by templates/networkpolicy.yaml of the person and score charts. */}}
{{- define "common.networkPolicy" -}}
{{- if .Values.networkPolicy.enabled }}
{{- $np := .Values.networkPolicy -}}
{{- $mode := include "common.rabbitmq.mode" . -}}
# Deny by default: only the traffic listed here reaches or leaves the service's pods.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "common.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    # The ingress controller / gateway.
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $np.ingressControllerNamespace }}
          {{- with $np.ingressControllerPodSelector }}
          podSelector:
            matchLabels:
              {{- toYaml . | nindent 14 }}
          {{- end }}
      ports:
        - port: http
          protocol: TCP
    # In-namespace clients that opt in (the `helm test` pod, the other service).
    - from:
        - podSelector:
            matchLabels:
              personscore.io/client: "true"
      ports:
        - port: http
          protocol: TCP
    {{- with $np.monitoringNamespace }}
    # Prometheus scraping /metrics.
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ . }}
      ports:
        - port: http
          protocol: TCP
    {{- end }}
    {{- include "svc.extraNetworkPolicyIngress" . | nindent 4 }}
    {{- with $np.extraIngress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  egress:
    # Cluster DNS.
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $np.dns.namespace }}
          podSelector:
            matchLabels:
              {{- toYaml $np.dns.podSelector | nindent 14 }}
      ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    # RabbitMQ (AMQP).
    {{- if eq $mode "external" }}
    {{- if $np.externalRabbitmqCIDRs }}
    - to:
        {{- range $np.externalRabbitmqCIDRs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        - port: 5672
          protocol: TCP
        - port: 5671
          protocol: TCP
    {{- end }}
    {{- else }}
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ include "common.rabbitmq.namespace" . }}
          podSelector:
            matchLabels:
              app.kubernetes.io/name: {{ .Values.rabbitmq.clusterName }}
      ports:
        - port: {{ include "common.rabbitmq.port" . }}
          protocol: TCP
    {{- end }}
    # MongoDB.
    {{- if .Values.mongodb.external.existingSecret }}
    {{- if $np.externalMongodbCIDRs }}
    - to:
        {{- range $np.externalMongodbCIDRs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        - port: 27017
          protocol: TCP
    {{- end }}
    {{- else }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "common.mongodb.selectorLabels" . | nindent 14 }}
      ports:
        - port: 27017
          protocol: TCP
    {{- end }}
    {{- with $np.extraEgress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end -}}

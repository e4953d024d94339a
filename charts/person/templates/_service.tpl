{{/*
Service-specific hooks (svc.*) that the shared templates of the library chart
charts/common call.
*/}}
{{/* True when an autoscaler (HPA) owns the replica count. */}}
{{- define "svc.autoscaled" -}}
{{- if .Values.autoscaling.enabled }}true{{ end -}}
{{- end -}}

{{/* Service-specific container ports (none for person). */}}
{{- define "svc.extraContainerPorts" -}}
{{- end -}}

{{/* Service-specific environment (none for person). */}}
{{- define "svc.extraServiceEnv" -}}
- name: OUTBOX_MAX_PENDING
  value: {{ .Values.config.outbox.maxPending | int | quote }}
- name: OUTBOX_MAX_AGE
  value: {{ .Values.config.outbox.maxAge | quote }}
{{- end -}}

{{/* The CPU HPA is rendered (person: whenever autoscaling is on). */}}
{{- define "svc.hpaEnabled" -}}
{{- if .Values.autoscaling.enabled }}true{{ end -}}
{{- end -}}

{{/* Service-specific NetworkPolicy ingress rules (none for person). */}}
{{- define "svc.extraNetworkPolicyIngress" -}}
{{- end -}}

{{/*
Service-specific hooks (svc.*) that the shared templates of the library chart
charts/common call.
*/}}
{{/* True when an autoscaler (CPU HPA or KEDA) owns the replica count. */}}
{{- define "svc.autoscaled" -}}
{{- if or .Values.autoscaling.enabled .Values.autoscaling.keda.enabled }}true{{ end -}}
{{- end -}}

{{/* The CPU HPA is rendered only when KEDA is off: KEDA creates its own HPA. */}}
{{- define "svc.hpaEnabled" -}}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.keda.enabled) }}true{{ end -}}
{{- end -}}

{{- define "svc.admin.secretName" -}}
{{- default (printf "%s-admin" (include "common.fullname" .)) .Values.admin.existingSecret -}}
{{- end -}}

{{/* The admin listener's port on the pod. */}}
{{- define "svc.extraContainerPorts" -}}
- name: admin
  containerPort: {{ .Values.config.adminPort }}
  protocol: TCP
{{- end -}}

{{- define "svc.extraServiceEnv" -}}
- name: ADMIN_ADDR
  value: {{ printf ":%v" .Values.config.adminPort | quote }}
- name: ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "svc.admin.secretName" . }}
      key: {{ .Values.admin.tokenKey }}
{{- end -}}

{{/* The admin port: from pods of this namespace only (never from the ingress). */}}
{{- define "svc.extraNetworkPolicyIngress" -}}
- from:
    - podSelector: {}
  ports:
    - port: admin
      protocol: TCP
{{- end -}}

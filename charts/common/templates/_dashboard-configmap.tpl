{{/* Rendered by templates/dashboard-configmap.yaml of the person and score charts. */}}
{{- define "common.dashboardConfigMap" -}}
{{- if .Values.dashboards.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "common.fullname" . }}-dashboard
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.labels" . | nindent 4 }}
    {{- with .Values.dashboards.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.dashboards.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
data:
  personscore-{{ .Chart.Name }}.json: |-
    {{- include "common.dashboard.json" . | replace "__SERVICE__" .Chart.Name | nindent 4 }}
{{- end }}
{{- end -}}

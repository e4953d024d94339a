{{/* Rendered by templates/prometheusrule.yaml of the person and score charts. */}}
{{- define "common.prometheusRule" -}}
{{- if .Values.metrics.prometheusRule.enabled }}
{{- $sel := printf "namespace=%q, job=%q" .Release.Namespace (include "common.fullname" .) }}
{{- $r := .Values.metrics.prometheusRule }}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.labels" . | nindent 4 }}
    {{- with $r.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  groups:
    - name: {{ include "common.fullname" . }}.outbox
      rules:
        # The backlog keeps growing: the broker has been unreachable (or the
        # relay cannot keep up) for a while. person refuses writes once a
        # replica's backlog reaches OUTBOX_MAX_PENDING.
        - alert: OutboxBacklogGrowing
          expr: |
            sum by (namespace, pod) (eventbus_outbox_pending{ {{- $sel -}} }) > {{ $r.backlogAbove }}
            and sum by (namespace, pod) (deriv(eventbus_outbox_pending{ {{- $sel -}} }[{{ $r.growingFor }}])) > 0
          for: {{ $r.growingFor }}
          labels:
            severity: warning
          annotations:
            summary: "{{ "{{ $labels.pod }}" }}: outbox backlog of {{ "{{ $value }}" }} events still growing"
            description: "Events are stored but not confirmed by the broker. Check the broker and the pod's /readyz (broker, writes, outbox)."
        # Events have waited long: score is that far behind for them.
        - alert: OutboxOldestPendingEvent
          expr: |
            max by (namespace, pod) (eventbus_outbox_oldest_pending_seconds{ {{- $sel -}} }) > {{ $r.oldestAboveSeconds }}
          for: 5m
          labels:
            severity: warning
          annotations:
            summary: "{{ "{{ $labels.pod }}" }}: the oldest pending outbox event has waited {{ "{{ $value }}" }} s"
            description: "Replicas read from this service's events are stale by at least that much."
{{- end }}
{{- end -}}

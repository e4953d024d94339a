{{/* Rendered by templates/mongodb-secret.yaml of the person and score charts. */}}
{{- define "common.mongodb.secret" -}}
{{- if and (not .Values.mongodb.external.existingSecret) (not .Values.mongodb.auth.existingSecret) }}
{{- $name := include "common.mongodb.fullname" . -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.mongodb.labels" . | nindent 4 }}
  annotations:
    # The data volume outlives the release (its PVC is retained), so the password that
    # initialised it must too: `helm uninstall` keeps this Secret, and an install of the
    # same release reads the password back (lookup) instead of generating a new one.
    helm.sh/resource-policy: keep
type: Opaque
stringData:
  mongodb-root-username: {{ .Values.mongodb.auth.rootUsername | quote }}
  mongodb-root-password: {{ include "common.secretValue" (dict "ctx" . "secret" $name "key" "mongodb-root-password" "length" 32) | quote }}
{{- end }}
{{- end -}}

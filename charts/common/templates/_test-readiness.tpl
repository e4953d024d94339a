{{/* Rendered by templates/tests/test-readiness.yaml of the person and score charts. */}}
{{- define "common.testReadiness" -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "common.fullname" . }}-test
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.commonLabels" . | nindent 4 }}
    app.kubernetes.io/component: test
    # Allowed in by the service's NetworkPolicy.
    personscore.io/client: "true"
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext:
    runAsNonRoot: true
    runAsUser: 65534
    runAsGroup: 65534
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: readyz
      image: {{ .Values.tests.image | quote }}
      securityContext:
        {{- include "common.containerSecurityContext" . | nindent 8 }}
      command: ["sh", "-ec"]
      args:
        - |
          base="http://{{ include "common.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.service.port }}"
          wget -q -T 5 -O /dev/null "$base/healthz"
          wget -q -T 5 -O /dev/null "$base/readyz"
          wget -q -T 5 -O - "$base/openapi.json" | grep -q '"openapi"'
          echo "{{ include "common.fullname" . }}: healthz, readyz and openapi.json OK"
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 32Mi
{{- end -}}

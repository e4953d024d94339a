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
    # Kept after the run (deleted before the next one) so `helm test --logs` can read it.
    helm.sh/hook-delete-policy: before-hook-creation
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
      imagePullPolicy: {{ .Values.tests.imagePullPolicy }}
      securityContext:
        {{- include "common.containerSecurityContext" . | nindent 8 }}
      {{- $base := printf "http://%s.%s.svc:%v" (include "common.fullname" .) .Release.Namespace .Values.service.port }}
      # The image's entrypoint is http-check (k8s/test/cmd/http-check): every URL must
      # answer 2xx, "URL|TEXT" must also contain TEXT.
      args:
        - {{ printf "%s/healthz" $base | quote }}
        - {{ printf "%s/readyz" $base | quote }}
        - {{ printf "%s/openapi.json|\"openapi\"" $base | quote }}
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 32Mi
{{- end -}}

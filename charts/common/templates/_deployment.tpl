{{/* Rendered by templates/deployment.yaml of the person and score charts. */}}
{{- define "common.deployment" -}}
{{- include "common.validateGrace" . -}}
{{- include "common.rabbitmq.validate" . -}}
{{- $mode := include "common.rabbitmq.mode" . -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "common.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.labels" . | nindent 4 }}
spec:
  {{- if not (include "svc.autoscaled" .) }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "common.selectorLabels" . | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "common.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- if and (not .Values.mongodb.external.existingSecret) (not .Values.mongodb.auth.existingSecret) }}
        checksum/mongodb-secret: {{ include "common.mongodb.secret" . | sha256sum }}
        {{- end }}
        {{- if eq $mode "topology" }}
        checksum/amqp-user: {{ include "common.rabbitmqUser" . | sha256sum }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "common.serviceAccountName" . }}
      automountServiceAccountToken: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml .Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .Chart.Name }}
          image: {{ include "common.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          securityContext:
            {{- include "common.containerSecurityContext" . | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ .Values.config.httpPort }}
              protocol: TCP
            {{- include "svc.extraContainerPorts" . | nindent 12 }}
          env:
            - name: HTTP_ADDR
              value: {{ printf ":%v" .Values.config.httpPort | quote }}
            {{- include "svc.extraServiceEnv" . | nindent 12 }}
            {{- if eq $mode "external" }}
            - name: AMQP_URL
              valueFrom:
                secretKeyRef:
                  name: {{ .Values.rabbitmq.external.existingSecret }}
                  key: {{ .Values.rabbitmq.external.urlKey }}
            {{- else }}
            - name: AMQP_USERNAME
              valueFrom:
                secretKeyRef:
                  name: {{ include "common.rabbitmq.credentialsSecret" . }}
                  key: username
            - name: AMQP_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ include "common.rabbitmq.credentialsSecret" . }}
                  key: password
            - name: AMQP_URL
              value: {{ include "common.rabbitmq.urls" . | quote }}
            {{- end }}
            {{- if .Values.mongodb.external.existingSecret }}
            - name: MONGO_URI
              valueFrom:
                secretKeyRef:
                  name: {{ .Values.mongodb.external.existingSecret }}
                  key: {{ .Values.mongodb.external.uriKey }}
            {{- else }}
            {{- if not (include "common.mongodb.isLocalmongo" .) }}
            - name: MONGO_USERNAME
              valueFrom:
                secretKeyRef:
                  name: {{ include "common.mongodb.secretName" . }}
                  key: mongodb-root-username
            - name: MONGO_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ include "common.mongodb.secretName" . }}
                  key: mongodb-root-password
            {{- end }}
            - name: MONGO_URI
              value: {{ include "common.mongodb.uri" . | quote }}
            {{- end }}
            - name: MONGO_DATABASE
              value: {{ .Values.config.mongoDatabase | quote }}
            - name: EXCHANGE_NAME
              value: {{ .Values.config.exchangeName | quote }}
            - name: LOG_LEVEL
              value: {{ .Values.config.logLevel | quote }}
            - name: SHUTDOWN_TIMEOUT
              value: {{ .Values.config.shutdownTimeout | quote }}
            - name: GOMAXPROCS
              valueFrom:
                resourceFieldRef:
                  containerName: {{ .Chart.Name }}
                  resource: limits.cpu
                  divisor: "1"
            - name: GOMEMLIMIT
              valueFrom:
                resourceFieldRef:
                  containerName: {{ .Chart.Name }}
                  resource: limits.memory
                  divisor: "1"
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          startupProbe:
            httpGet:
              path: {{ .Values.probes.startup.path }}
              port: http
            periodSeconds: {{ .Values.probes.startup.periodSeconds }}
            failureThreshold: {{ .Values.probes.startup.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
          livenessProbe:
            httpGet:
              path: {{ .Values.probes.liveness.path }}
              port: http
            periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
            failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
          readinessProbe:
            httpGet:
              path: {{ .Values.probes.readiness.path }}
              port: http
            periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
            failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
          {{- if gt (int .Values.lifecycle.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ .Values.lifecycle.preStopSleepSeconds }}
          {{- end }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- tpl (toYaml .) $ | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* Rendered by templates/mongodb.yaml of the person and score charts. */}}
{{- define "common.mongodb" -}}
{{- if not .Values.mongodb.external.existingSecret }}
{{- $m := .Values.mongodb -}}
{{- $name := include "common.mongodb.fullname" . -}}
{{- $local := include "common.mongodb.isLocalmongo" . | eq "true" -}}
# Standalone MongoDB server for this service only (database per service).
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.mongodb.labels" . | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    {{- include "common.mongodb.selectorLabels" . | nindent 4 }}
  ports:
    - name: mongodb
      port: 27017
      targetPort: mongodb
      protocol: TCP
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.mongodb.labels" . | nindent 4 }}
spec:
  serviceName: {{ $name }}
  replicas: 1
  selector:
    matchLabels:
      {{- include "common.mongodb.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "common.mongodb.labels" . | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 30
      securityContext:
        {{- toYaml (ternary $m.localmongo.podSecurityContext $m.podSecurityContext $local) | nindent 8 }}
      containers:
        - name: mongodb
          {{- if $local }}
          # localmongo: the embedded MongoDB-wire server (its journal in /data/db),
          # listening on 0.0.0.0:27017 (image defaults). No authentication.
          image: {{ printf "%s:%s" $m.localmongo.image.repository $m.localmongo.image.tag | quote }}
          imagePullPolicy: {{ $m.localmongo.image.pullPolicy }}
          {{- else }}
          image: {{ printf "%s:%s" $m.image.repository $m.image.tag | quote }}
          imagePullPolicy: {{ $m.image.pullPolicy }}
          args: ["--bind_ip_all", "--auth"]
          {{- end }}
          securityContext:
            {{- include "common.containerSecurityContext" . | nindent 12 }}
          {{- if not $local }}
          env:
            - name: MONGO_INITDB_ROOT_USERNAME
              valueFrom:
                secretKeyRef:
                  name: {{ include "common.mongodb.secretName" . }}
                  key: mongodb-root-username
            - name: MONGO_INITDB_ROOT_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ include "common.mongodb.secretName" . }}
                  key: mongodb-root-password
          {{- end }}
          ports:
            - name: mongodb
              containerPort: 27017
              protocol: TCP
          {{- if $local }}
          startupProbe:
            tcpSocket:
              port: mongodb
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            tcpSocket:
              port: mongodb
            periodSeconds: 20
            failureThreshold: 6
          readinessProbe:
            tcpSocket:
              port: mongodb
            periodSeconds: 10
            failureThreshold: 3
          {{- else }}
          startupProbe:
            exec:
              command: ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"]
            periodSeconds: 5
            timeoutSeconds: 5
            failureThreshold: 60
          livenessProbe:
            exec:
              command: ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"]
            periodSeconds: 20
            timeoutSeconds: 10
            failureThreshold: 6
          readinessProbe:
            exec:
              command: ["mongosh", "--quiet", "--eval", "db.adminCommand('ping').ok"]
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 6
          {{- end }}
          resources:
            {{- toYaml $m.resources | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /data/db
            {{- if not $local }}
            - name: configdb
              mountPath: /data/configdb
            {{- end }}
            # mongod: the image's mongodb user has HOME=/data/db (mongosh state for the
            # probes); temporary files of either server go to /tmp.
            - name: tmp
              mountPath: /tmp
      volumes:
        {{- if not $local }}
        - name: configdb
          emptyDir: {}
        {{- end }}
        - name: tmp
          emptyDir: {}
        {{- if not $m.persistence.enabled }}
        - name: data
          emptyDir: {}
        {{- end }}
  {{- if $m.persistence.enabled }}
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Retain
  volumeClaimTemplates:
    - metadata:
        name: data
        labels:
          {{- include "common.mongodb.selectorLabels" . | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml $m.persistence.accessModes | nindent 10 }}
        {{- with $m.persistence.storageClassName }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $m.persistence.size }}
  {{- end }}
---
{{- if .Values.networkPolicy.enabled }}
# MongoDB accepts connections from this service's pods only.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "common.mongodb.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "common.mongodb.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - podSelector:
            matchLabels:
              {{- include "common.selectorLabels" . | nindent 14 }}
      ports:
        - port: mongodb
          protocol: TCP
  egress:
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
          podSelector:
            matchLabels:
              {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 14 }}
      ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
{{- end }}
{{- end }}
{{- end -}}

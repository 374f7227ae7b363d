{{/* Names ------------------------------------------------------------------------------- */}}

{{- define "sundial.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sundial.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<suffix>", kept within 63 characters. */}}
{{- define "sundial.componentName" -}}
{{- printf "%s-%s" (include "sundial.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix }}
{{- end }}

{{- define "sundial.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: include with (dict "root" $ "component" "worker") ------------------------------- */}}

{{- define "sundial.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sundial.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "sundial.labels" -}}
{{ include "sundial.selectorLabels" . }}
helm.sh/chart: {{ include "sundial.chart" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: sundial
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Image ------------------------------------------------------------------------------- */}}

{{- define "sundial.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Service accounts -------------------------------------------------------------------- */}}

{{- define "sundial.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "sundial.componentName" (dict "root" . "suffix" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sundial.workerServiceAccount" -}}
{{- if .Values.worker.serviceAccount.create }}
{{- default (include "sundial.componentName" (dict "root" . "suffix" "worker")) .Values.worker.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.worker.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sundial.launcherServiceAccount" -}}
{{- if .Values.launcher.serviceAccount.create }}
{{- default (include "sundial.componentName" (dict "root" . "suffix" "launcher")) .Values.launcher.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.launcher.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sundial.dashboardServiceAccount" -}}
{{- if .Values.dashboard.serviceAccount.create }}
{{- default (include "sundial.componentName" (dict "root" . "suffix" "dashboard")) .Values.dashboard.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.dashboard.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Dashboard --------------------------------------------------------------------------- */}}

{{/* Where a job created without a namespace goes: a namespace the dashboard lists and, in
namespaced mode, one the operator watches, so it is reconciled. */}}
{{- define "sundial.dashboardDefaultNamespace" -}}
{{- coalesce .Values.dashboard.defaultNamespace (first .Values.dashboard.namespaces) (first .Values.watchNamespaces) "default" }}
{{- end }}

{{/* "true" when the dashboard impersonates the proxy's user (and so needs a token and RBAC). */}}
{{- define "sundial.dashboardImpersonates" -}}
{{- if and .Values.dashboard.enabled (eq .Values.dashboard.auth "proxy") }}true{{ end }}
{{- end }}

{{/* Operator mode ----------------------------------------------------------------------- */}}

{{- define "sundial.peeringName" -}}
{{- default (include "sundial.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{/* "true" when the chart renders and serves the webhook through a Service (cert files). */}}
{{- define "sundial.webhookViaService" -}}
{{- if and .Values.webhook.enabled (ne .Values.webhook.certificate.source "operatorSelfSigned") }}true{{ end }}
{{- end }}

{{- define "sundial.webhookSecretName" -}}
{{- if eq .Values.webhook.certificate.source "secret" }}
{{- .Values.webhook.certificate.secretName }}
{{- else }}
{{- include "sundial.componentName" (dict "root" . "suffix" "webhook-tls") }}
{{- end }}
{{- end }}

{{/* Connections ------------------------------------------------------------------------- */}}

{{- define "sundial.bundledSecret" -}}
{{- include "sundial.componentName" (dict "root" . "suffix" "bundled") }}
{{- end }}

{{- define "sundial.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.bundled.postgresql.enabled }}
      name: {{ include "sundial.bundledSecret" . }}
      key: DATABASE_URL
      {{- else }}
      name: {{ required "database.existingSecret is required (or bundled.postgresql.enabled)" .Values.database.existingSecret }}
      key: {{ .Values.database.secretKey }}
      {{- end }}
{{- end }}

{{- define "sundial.redisEnv" -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.bundled.redis.enabled }}
      name: {{ include "sundial.bundledSecret" . }}
      key: REDIS_URL
      {{- else }}
      name: {{ required "redis.existingSecret is required (or bundled.redis.enabled)" .Values.redis.existingSecret }}
      key: {{ .Values.redis.secretKey }}
      {{- end }}
{{- end }}

{{/* Secret value kept across upgrades: the given one, else the live Secret's, else random. */}}
{{- define "sundial.bundledPassword" -}}
{{- $given := .given }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $live := lookup "v1" "Secret" .root.Release.Namespace (include "sundial.bundledSecret" .root) }}
{{- if and $live $live.data (hasKey $live.data .key) }}
{{- index $live.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod pieces -------------------------------------------------------------------------- */}}

{{- define "sundial.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "sundial.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}


{{/* The shared environment of every Sundial container: connections, then the ConfigMap. */}}
{{- define "sundial.commonEnv" -}}
{{ include "sundial.databaseEnv" . }}
{{ include "sundial.redisEnv" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sundial.commonEnvFrom" -}}
- configMapRef:
    name: {{ include "sundial.fullname" . }}
{{- with .Values.extraEnvFrom }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sundial.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "sundial.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* The operator's rules on ScheduledJobs and Events (ClusterRole or per-namespace Role). */}}
{{- define "sundial.operatorJobRules" -}}
- apiGroups: ["sundial.dev"]
  resources: ["scheduledjobs"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["sundial.dev"]
  resources: ["scheduledjobs/status"]
  verbs: ["patch"]
- apiGroups: ["sundial.dev"]
  resources: ["scheduledjobs/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Cluster-scoped objects (ClusterRoles, bindings, webhook configuration) carry the release
namespace in their name: releases of the same name in two namespaces must not collide. */}}
{{- define "sundial.clusterName" -}}
{{- $base := printf "%s-%s" .root.Release.Namespace (include "sundial.fullname" .root) }}
{{- if .suffix }}{{ printf "%s-%s" $base .suffix | trunc 253 | trimSuffix "-" }}{{ else }}{{ $base | trunc 253 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- /* The http target's egress settings (docs/security.md), this release's own services denied;
every worker Deployment (the default pool's and each of workerPools) carries them. */ -}}
{{- define "sundial.workerHttpEgressEnv" -}}
{{- with .Values.worker.httpEgress }}
{{- $own := list }}
{{- range $suffix := list "dashboard" "operator-metrics" "worker-metrics" "webhook" }}
{{- $svc := include "sundial.componentName" (dict "root" $ "suffix" $suffix) }}
{{- $own = concat $own (list $svc (printf "%s.%s" $svc $.Release.Namespace) (printf "%s.%s.svc" $svc $.Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc $.Release.Namespace)) }}
{{- end }}
- name: SUNDIAL_HTTP_DENY_HOSTS
  value: {{ join "," (concat $own .denyHosts) | quote }}
{{- with .allowCidrs }}
- name: SUNDIAL_HTTP_ALLOW_CIDRS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .allowHosts }}
- name: SUNDIAL_HTTP_ALLOW_HOSTS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .denyCidrs }}
- name: SUNDIAL_HTTP_DENY_CIDRS
  value: {{ join "," . | quote }}
{{- end }}
- name: SUNDIAL_HTTP_DENY_PRIVATE
  value: {{ .denyPrivate | quote }}
{{- end }}
{{- end }}

{{- /* A worker NetworkPolicy's policyTypes and egress, given the ranges it must never reach (the
default pool's and every pool's): DNS anywhere (node-local caches live on link-local addresses),
everything else but the denied ranges; no Egress type at all when none are denied. */ -}}
{{- define "sundial.workerEgress" -}}
{{- if . }}
{{- $v4 := list }}
{{- $v6 := list }}
{{- range . }}
{{- if contains ":" . }}{{ $v6 = append $v6 . }}{{ else }}{{ $v4 = append $v4 . }}{{ end }}
{{- end }}
policyTypes: ["Ingress", "Egress"]
egress:
  - ports:
      - port: 53
        protocol: UDP
      - port: 53
        protocol: TCP
  - to:
      - ipBlock:
          cidr: 0.0.0.0/0
          {{- with $v4 }}
          except: {{ toJson . }}
          {{- end }}
      - ipBlock:
          cidr: ::/0
          {{- with $v6 }}
          except: {{ toJson . }}
          {{- end }}
{{- else }}
policyTypes: ["Ingress"]
{{- end }}
{{- end }}

{{/* Checks across values that values.schema.json cannot express readably. */}}
{{- define "sundial.validate" -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.peering.enabled) }}
{{- fail "operator.replicas > 1 needs operator.peering.enabled=true: standalone replicas would all act" }}
{{- end }}
{{- $grace := int .Values.worker.terminationGracePeriodSeconds }}
{{- if and (not (kindIs "invalid" .Values.worker.shutdownGraceSeconds)) (ge (int .Values.worker.shutdownGraceSeconds) $grace) }}
{{- fail (printf "worker.shutdownGraceSeconds (%v) must be below worker.terminationGracePeriodSeconds (%d), or the kubelet kills runs the worker is still waiting for" .Values.worker.shutdownGraceSeconds $grace) }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificate.source "secret") }}
{{- if not .Values.webhook.certificate.secretName }}
{{- fail "webhook.certificate.source=secret needs webhook.certificate.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if not .Values.webhook.certificate.caBundle }}
{{- fail "webhook.certificate.source=secret needs webhook.certificate.caBundle (base64 PEM of the CA that signed it)" }}
{{- end }}
{{- end }}
{{- if and .Values.keda.enabled (not .Values.keda.redis.address) (not .Values.bundled.redis.enabled) }}
{{- fail "keda.enabled needs keda.redis.address (host:port of your Redis) unless bundled.redis.enabled" }}
{{- end }}
{{- if and .Values.keda.enabled (lt (int .Values.keda.maxReplicaCount) (int .Values.keda.minReplicaCount)) }}
{{- fail "keda.maxReplicaCount must be >= keda.minReplicaCount" }}
{{- end }}
{{- if and .Values.dashboard.enabled .Values.dashboard.defaultNamespace .Values.dashboard.namespaces }}
{{- if not (has .Values.dashboard.defaultNamespace .Values.dashboard.namespaces) }}
{{- fail (printf "dashboard.defaultNamespace (%s) must be one of dashboard.namespaces (%s), or the page creates jobs it cannot list" .Values.dashboard.defaultNamespace (join ", " .Values.dashboard.namespaces)) }}
{{- end }}
{{- end }}
{{- end }}

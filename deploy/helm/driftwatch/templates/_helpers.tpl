{{/* Names, labels, and the config file the values translate into. */}}

{{- define "driftwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "driftwatch.fullname" -}}
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

{{- define "driftwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "driftwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "driftwatch.labels" -}}
{{ include "driftwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "driftwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "driftwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "driftwatch.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Service's in-cluster DNS name: what the API server dials and the certificate names. */}}
{{- define "driftwatch.serviceHost" -}}
{{- printf "%s.%s.svc" (include "driftwatch.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The serving certificate's Secret: cert-manager's, the one named, or <fullname>-tls. */}}
{{- define "driftwatch.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "driftwatch.fullname" .) }}
{{- else }}
{{- default (printf "%s-tls" (include "driftwatch.fullname" .)) .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{- define "driftwatch.dataDir" -}}/var/lib/driftwatch{{- end }}

{{/*
The config file. Values are camelCase; every key written here is
driftwatch's own (README "Configuration"), spelled out one by one so that
a renamed value cannot slip through. `.Values.config` is merged last and
wins. Paths are those of the projected volume in deployment.yaml.
*/}}
{{- define "driftwatch.config" -}}
{{- $v := .Values }}
{{- $tls := dict "cert_file" "/etc/driftwatch/tls/tls.crt" "key_file" "/etc/driftwatch/tls/tls.key" }}
{{- with $v.tls.reloadInterval }}{{ $_ := set $tls "reload_interval" . }}{{ end }}
{{- if $v.clientCa.existingSecret }}
{{- $_ := set $tls "client_ca_file" "/etc/driftwatch/client-ca/ca.crt" }}
{{- end }}
{{- $auth := dict }}
{{- if $v.tokens.existingSecret }}{{ $_ := set $auth "bearer_tokens_file" "/etc/driftwatch/tokens/tokens" }}{{ end }}
{{- if $v.queryTokens.existingSecret }}{{ $_ := set $auth "query_tokens_file" "/etc/driftwatch/query-tokens/tokens" }}{{ end }}
{{- with $v.clientCa.clientClusters }}{{ $_ := set $auth "client_clusters" . }}{{ end }}
{{- $server := dict "listen" (printf "0.0.0.0:%d" (int $v.containerPort)) "tls" $tls }}
{{- if $auth }}{{ $_ := set $server "auth" $auth }}{{ end }}
{{- $history := dict "data_dir" (include "driftwatch.dataDir" .) }}
{{- if $v.postgres.enabled }}
{{- if not $v.postgres.urlSecret.name }}{{ fail "postgres.enabled needs postgres.urlSecret.name (a Secret holding the server's URL)" }}{{ end }}
{{- $_ := set $history "backend" "postgres" }}
{{- $pg := dict "url_file" "/etc/driftwatch/postgres/url" "pool" (int $v.postgres.pool) }}
{{- with $v.postgres.tlsSecret }}{{ if .name }}
{{- $pgTls := dict "ca_file" "/etc/driftwatch/postgres/tls/ca.crt" }}
{{- if .clientCertificate }}
{{- $_ := set $pgTls "client_cert_file" "/etc/driftwatch/postgres/tls/tls.crt" }}
{{- $_ := set $pgTls "client_key_file" "/etc/driftwatch/postgres/tls/tls.key" }}
{{- end }}
{{- $_ := set $pg "tls" $pgTls }}
{{- end }}{{ end }}
{{- $_ := set $history "postgres" $pg }}
{{- else if gt (int $v.replicaCount) 1 }}
{{- fail "replicaCount > 1 needs postgres.enabled: the SQLite history store is one process's" }}
{{- end }}
{{- $sinks := dict "stdout" (dict "enabled" $v.sinks.stdout.enabled) }}
{{- with $v.sinks.file }}
{{- if .enabled }}
{{- $file := dict "path" .path }}
{{- with .format }}{{ $_ := set $file "format" . }}{{ end }}
{{- with .stream }}{{ $_ := set $file "stream" . }}{{ end }}
{{- if hasKey . "maxBytes" }}{{ $_ := set $file "max_bytes" (int64 .maxBytes) }}{{ end }}
{{- if hasKey . "keep" }}{{ $_ := set $file "keep" (int .keep) }}{{ end }}
{{- $_ := set $sinks "file" $file }}
{{- end }}
{{- end }}
{{- with $v.sinks.kafka }}
{{- if .enabled }}
{{- if not .brokers }}{{ fail "sinks.kafka.enabled needs sinks.kafka.brokers" }}{{ end }}
{{- $k := dict "brokers" .brokers "topic" .topic }}
{{- with .deliveryTimeoutMs }}{{ $_ := set $k "delivery_timeout_ms" (int64 .) }}{{ end }}
{{- with .properties }}{{ $_ := set $k "properties" . }}{{ end }}
{{- $_ := set $sinks "kafka" $k }}
{{- end }}
{{- end }}
{{- with $v.sinks.outboxDir }}{{ $_ := set $sinks "outbox_dir" . }}{{ end }}
{{- if $v.sinks.http }}
{{- $list := list }}
{{- range $v.sinks.http }}
{{- $h := dict "name" .name "url" .url }}
{{- with .preset }}{{ $_ := set $h "preset" . }}{{ end }}
{{- with .format }}{{ $_ := set $h "format" . }}{{ end }}
{{- with .stream }}{{ $_ := set $h "stream" . }}{{ end }}
{{- with .headers }}{{ $_ := set $h "headers" . }}{{ end }}
{{- with .timeout }}{{ $_ := set $h "timeout" . }}{{ end }}
{{- with .outboxMaxBytes }}{{ $_ := set $h "outbox_max_bytes" (int64 .) }}{{ end }}
{{- with .batchMaxItems }}{{ $_ := set $h "batch_max_items" (int .) }}{{ end }}
{{- with .batchMaxWait }}{{ $_ := set $h "batch_max_wait" . }}{{ end }}
{{- with .retryInitialBackoff }}{{ $_ := set $h "retry_initial_backoff" . }}{{ end }}
{{- with .retryMaxBackoff }}{{ $_ := set $h "retry_max_backoff" . }}{{ end }}
{{- if .tokenSecret }}{{ $_ := set $h "token_file" (printf "/etc/driftwatch/sinks/%s/token" .name) }}{{ end }}
{{- if .caSecret }}{{ $_ := set $h "ca_file" (printf "/etc/driftwatch/sinks/%s/ca.crt" .name) }}{{ end }}
{{- $list = append $list $h }}
{{- end }}
{{- $_ := set $sinks "http" $list }}
{{- end }}
{{- if $v.sinks.syslog }}
{{- $list := list }}
{{- range $v.sinks.syslog }}
{{- $s := dict "name" .name "address" .address }}
{{- with .transport }}{{ $_ := set $s "transport" . }}{{ end }}
{{- with .format }}{{ $_ := set $s "format" . }}{{ end }}
{{- with .stream }}{{ $_ := set $s "stream" . }}{{ end }}
{{- with .appName }}{{ $_ := set $s "app_name" . }}{{ end }}
{{- with .facility }}{{ $_ := set $s "facility" . }}{{ end }}
{{- with .hostname }}{{ $_ := set $s "hostname" . }}{{ end }}
{{- with .outboxMaxBytes }}{{ $_ := set $s "outbox_max_bytes" (int64 .) }}{{ end }}
{{- if .caSecret }}{{ $_ := set $s "ca_file" (printf "/etc/driftwatch/sinks/%s/ca.crt" .name) }}{{ end }}
{{- $list = append $list $s }}
{{- end }}
{{- $_ := set $sinks "syslog" $list }}
{{- end }}
{{- $cfg := dict "cluster" $v.clusterName "server" $server "history" $history "sinks" $sinks }}
{{- with $v.pipelines }}{{ $_ := set $cfg "pipelines" . }}{{ end }}
{{- if $v.kafka.enabled }}
{{- if not $v.kafka.brokers }}{{ fail "kafka.enabled needs kafka.brokers" }}{{ end }}
{{- $k := dict "brokers" $v.kafka.brokers "topics" $v.kafka.topics }}
{{- with $v.kafka.groupId }}{{ $_ := set $k "group_id" . }}{{ end }}
{{- with $v.kafka.deadLetterTopic }}{{ $_ := set $k "dead_letter_topic" . }}{{ end }}
{{- with $v.kafka.clusterFrom }}{{ $_ := set $k "cluster_from" . }}{{ end }}
{{- with $v.kafka.maxBatchMessages }}{{ $_ := set $k "max_batch_messages" (int .) }}{{ end }}
{{- with $v.kafka.reorderWindow }}{{ $_ := set $k "reorder_window" . }}{{ end }}
{{- with $v.kafka.properties }}{{ $_ := set $k "properties" . }}{{ end }}
{{- $_ := set $cfg "sources" (dict "kafka" $k) }}
{{- end }}
{{- with $v.alerts.foldWindow }}{{ $_ := set $cfg "alerts" (dict "fold_window" .) }}{{ end }}
{{- if $v.admission.enabled }}
{{- $a := dict "enabled" true "mode" $v.admission.mode }}
{{- with $v.admission.breakGlassGroups }}{{ $_ := set $a "break_glass_groups" . }}{{ end }}
{{- with $v.admission.breakGlassAnnotation }}{{ $_ := set $a "break_glass_annotation" . }}{{ end }}
{{- with $v.admission.breakGlassMax }}{{ $_ := set $a "break_glass_max" . }}{{ end }}
{{- with $v.admission.overrides }}{{ $_ := set $a "overrides" . }}{{ end }}
{{- $_ := set $cfg "admission" $a }}
{{- end }}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $v.config)) }}
{{- end }}

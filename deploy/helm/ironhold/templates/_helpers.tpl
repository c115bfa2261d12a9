{{- define "ironhold.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ironhold.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ironhold.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ironhold.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ironhold.labels" -}}
{{ include "ironhold.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ironhold.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ironhold.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ironhold.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{/* The gateway's config: the values' config, listening on all addresses of the pod, with
     the drain the pod's lifecycle was sized for. */}}
{{- define "ironhold.config" -}}
{{- $server := merge (dict "host" "0.0.0.0" "port" (int .Values.service.port)
      "drain" (dict "grace" (printf "%ds" (int .Values.drain.graceSeconds))
                    "timeout" (printf "%ds" (int .Values.drain.timeoutSeconds))))
      (default (dict) .Values.config.server) -}}
{{- $config := merge (dict "server" $server) (omit .Values.config "server") -}}
{{- toYaml $config -}}
{{- end -}}

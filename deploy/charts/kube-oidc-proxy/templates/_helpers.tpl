{{/* Names and labels, as `helm create` makes them. */}}
{{- define "kube-oidc-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kube-oidc-proxy.fullname" -}}
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

{{- define "kube-oidc-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-oidc-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kube-oidc-proxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kube-oidc-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kube-oidc-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-oidc-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-oidc-proxy.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "kube-oidc-proxy.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{- define "kube-oidc-proxy.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The ConfigMap's data: the files the proxy reads (authentication config, OIDC CA, audit
policy). Its checksum on the pod template rolls the pods when any of them changes. */}}
{{- define "kube-oidc-proxy.configData" -}}
{{- with .Values.authenticationConfig }}
authentication-config.yaml: |
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.oidc.caPEM }}
oidc-ca.pem: |
{{- . | nindent 2 }}
{{- end }}
{{- with .Values.audit.policy }}
audit-policy.yaml: |
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The keys of the extras every impersonated request may carry, from the features enabled:
what the proxy sends and so what its RBAC must allow (one userextras/<key> rule each). */}}
{{- define "kube-oidc-proxy.userExtraKeys" -}}
{{- $keys := list }}
{{- $imp := .Values.impersonation }}
{{- if $imp.credentialId }}{{ $keys = append $keys "authentication.kubernetes.io/credential-id" }}{{ end }}
{{- if $imp.kubectlAs }}
{{- range list "user" "groups" "uid" "extra" }}{{ $keys = append $keys (printf "originaluser.jetstack.io-%s" .) }}{{ end }}
{{- end }}
{{- if $imp.clientIP }}{{ $keys = append $keys "remote-client-ip" }}{{ end }}
{{- range $k, $_ := $imp.extraUserHeaders }}{{ $keys = append $keys (lower $k) }}{{ end }}
{{- range (.Values.authenticationConfig.jwt | default list) }}
{{- range ((.claimMappings | default dict).extra | default list) }}{{ $keys = append $keys (lower .key) }}{{ end }}
{{- end }}
{{- range $imp.userExtras }}{{ $keys = append $keys (lower .) }}{{ end }}
{{- toJson ($keys | uniq) }}
{{- end }}

{{/* Whether any configured issuer maps a uid (the proxy then sends Impersonate-Uid). */}}
{{- define "kube-oidc-proxy.mapsUid" -}}
{{- range (.Values.authenticationConfig.jwt | default list) }}
{{- if ((.claimMappings | default dict).uid | default dict) }}true{{ end }}
{{- end }}
{{- end }}

{{/* --audit-<backend>-<flag>=value for each key of an options map (camelCase -> kebab-case). */}}
{{- define "kube-oidc-proxy.auditOptions" -}}
{{- $prefix := index . 0 }}
{{- range $k, $v := index . 1 }}
{{- /* YAML numbers arrive as float64: print 10485760, not 1.048576e+07. */}}
{{- if kindIs "float64" $v }}{{ $v = int64 $v }}{{ end }}
{{ printf "--audit-%s-%s=%v" $prefix (kebabcase $k) $v }}
{{- end }}
{{- end }}

{{/* The proxy's flags, one "--flag=value" per line, from the values (README.md maps each). */}}
{{- define "kube-oidc-proxy.args" -}}
{{- $up := .Values.upstream }}
--secure-port={{ .Values.server.securePort }}
--readiness-probe-port={{ .Values.server.probePort }}
{{- with .Values.server.bindAddress }}
--bind-address={{ . }}
{{- end }}
--tls-cert-file=/etc/kube-oidc-proxy/tls/tls.crt
--tls-private-key-file=/etc/kube-oidc-proxy/tls/tls.key
{{- with .Values.tls.minVersion }}
--tls-min-version={{ . }}
{{- end }}
{{- with .Values.tls.cipherSuites }}
--tls-cipher-suites={{ join "," . }}
{{- end }}
{{- range $i, $sni := .Values.tls.sniCertificates }}
--tls-sni-cert-key=/etc/kube-oidc-proxy/sni/{{ $i }}/tls.crt,/etc/kube-oidc-proxy/sni/{{ $i }}/tls.key{{ with $sni.domains }}:{{ join "," . }}{{ end }}
{{- end }}
{{- if .Values.server.disableHTTP2 }}
--disable-http2-serving=true
{{- end }}
{{- with .Values.server.http2MaxStreamsPerConnection }}
--http2-max-streams-per-connection={{ . }}
{{- end }}
--shutdown-grace-period={{ .Values.server.shutdownGracePeriod }}
--readiness-upstream={{ .Values.server.readinessUpstream }}
{{- if .Values.authenticationConfig }}
--authentication-config=/etc/kube-oidc-proxy/config/authentication-config.yaml
--authentication-config-reload-interval={{ .Values.authentication.reloadInterval }}
{{- else }}
{{- with .Values.oidc }}
--oidc-issuer-url={{ .issuerUrl }}
--oidc-client-id={{ .clientId }}
{{- if .caPEM }}
--oidc-ca-file=/etc/kube-oidc-proxy/config/oidc-ca.pem
{{- end }}
--oidc-username-claim={{ .usernameClaim }}
{{- with .usernamePrefix }}
--oidc-username-prefix={{ . }}
{{- end }}
{{- with .groupsClaim }}
--oidc-groups-claim={{ . }}
{{- end }}
{{- with .groupsPrefix }}
--oidc-groups-prefix={{ . }}
{{- end }}
--oidc-signing-algs={{ join "," .signingAlgs }}
{{- range $k, $v := .requiredClaims }}
--oidc-required-claim={{ $k }}={{ $v }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.authentication.allowReservedIdentities }}
--allow-reserved-identities=true
{{- end }}
--readiness-issuers={{ .Values.authentication.readinessIssuers }}
{{- with .Values.impersonation }}
{{- if .disabled }}
--disable-impersonation=true
{{- end }}
{{- if .clientIP }}
--extra-user-header-client-ip=true
{{- end }}
{{- with .trustedProxies }}
--trusted-proxies={{ join "," . }}
{{- end }}
{{- range $k, $values := .extraUserHeaders }}
{{- range $values }}
--extra-user-headers={{ $k }}={{ . }}
{{- end }}
{{- end }}
--subject-access-review-timeout={{ .subjectAccessReviewTimeout }}
{{- end }}
{{- if .Values.tokenPassthrough.enabled }}
--token-passthrough=true
{{- with .Values.tokenPassthrough.audiences }}
--token-passthrough-audiences={{ join "," . }}
{{- end }}
{{- end }}
{{- if $up.secretName }}
{{- with $up.kubeconfigKey }}
--kubeconfig=/etc/kube-oidc-proxy/upstream/{{ . }}
{{- end }}
{{- with $up.certificateAuthorityKey }}
--certificate-authority=/etc/kube-oidc-proxy/upstream/{{ . }}
{{- end }}
{{- with $up.clientCertificateKey }}
--client-certificate=/etc/kube-oidc-proxy/upstream/{{ . }}
{{- end }}
{{- with $up.clientKeyKey }}
--client-key=/etc/kube-oidc-proxy/upstream/{{ . }}
{{- end }}
{{- end }}
{{- with $up.context }}
--context={{ . }}
{{- end }}
{{- with $up.cluster }}
--cluster={{ . }}
{{- end }}
{{- with $up.user }}
--user={{ . }}
{{- end }}
{{- with $up.server }}
--server={{ . }}
{{- end }}
{{- with $up.tlsServerName }}
--tls-server-name={{ . }}
{{- end }}
{{- if $up.insecureSkipTLSVerify }}
--insecure-skip-tls-verify=true
{{- end }}
{{- with $up.requestTimeout }}
--request-timeout={{ . }}
{{- end }}
{{- if .Values.audit.policy }}
--audit-policy-file=/etc/kube-oidc-proxy/config/audit-policy.yaml
{{- end }}
{{- with .Values.audit.log.path }}
--audit-log-path={{ . }}
{{- end }}
{{- include "kube-oidc-proxy.auditOptions" (list "log" .Values.audit.log.options) }}
{{- if .Values.audit.webhook.configSecretName }}
--audit-webhook-config-file=/etc/kube-oidc-proxy/audit-webhook/kubeconfig
{{- end }}
{{- include "kube-oidc-proxy.auditOptions" (list "webhook" .Values.audit.webhook.options) }}
--v={{ .Values.logging.verbosity }}
--log-format={{ .Values.logging.format }}
{{- end }}

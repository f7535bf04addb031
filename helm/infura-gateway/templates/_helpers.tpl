{{- define "infura-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "infura-gateway.fullname" -}}
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

{{- define "infura-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "infura-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "infura-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "infura-gateway.labels" -}}
helm.sh/chart: {{ include "infura-gateway.chart" . }}
{{ include "infura-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: infura-gateway
{{- end }}

{{- define "infura-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "infura-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The gateway image: by digest when one is given (the tag stays as a readable hint). */}}
{{- define "infura-gateway.image" -}}
{{- $repo := required "image.repository is required: push the image built from the repository's Dockerfile to your registry (nothing publishes a default one)" .Values.image.repository }}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $repo $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{- define "infura-gateway.testImage" -}}
{{- $i := .Values.tests.image }}
{{- if $i.digest }}
{{- printf "%s:%s@%s" $i.repository $i.tag $i.digest }}
{{- else }}
{{- printf "%s:%s" $i.repository $i.tag }}
{{- end }}
{{- end }}

{{/*
Bytes of a Kubernetes memory quantity (512Mi, 1Gi, 1.5G, 268435456), as a float.
The schema admits only these forms.
*/}}
{{- define "infura-gateway.bytes" -}}
{{- $q := toString . }}
{{- $mult := 1.0 }}
{{- $units := dict "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "m" 0.001 }}
{{- range $suffix, $m := $units }}
{{- if hasSuffix $suffix $q }}
{{- $q = trimSuffix $suffix $q }}
{{- $mult = $m }}
{{- end }}
{{- end }}
{{- mulf (float64 $q) $mult }}
{{- end }}

{{/*
GOMEMLIMIT in bytes the gateway will set from the values' memory limit
(goMemLimitPercent of it): for checking the budgets at render time only; the pod gets
the limit itself through the downward API.
*/}}
{{- define "infura-gateway.goMemLimit" -}}
{{- $limit := include "infura-gateway.bytes" .Values.resources.limits.memory | float64 }}
{{- mulf $limit .Values.goMemLimitPercent 0.01 | floor | int64 }}
{{- end }}

{{/*
Bytes the gateway's budgets let it hold: the immutable cache (when on), request bytes
waiting on upstreams, the anonymous clients' table (with an anonymous plan), 32 KiB
per client connection of maxConns (what an idle one holds at most: its read buffer,
goroutine stack, request context and the body buffers kept for its next request) and
64 MiB for the runtime, stacks and buffers.
*/}}
{{- define "infura-gateway.budgetBytes" -}}
{{- $c := .Values.config }}
{{- $b := add (int64 $c.maxPendingBytes) (mul (int64 ($c.maxConns | default 0)) 32768) 67108864 }}
{{- if $c.cacheEnabled }}{{ $b = add $b (int64 $c.cacheMaxBytes) }}{{ end }}
{{- with $c.anonymous }}{{ if .plan }}{{ $b = add $b (int64 (.max_bytes | default 67108864)) }}{{ end }}{{ end }}
{{- $b }}
{{- end }}

{{/* resources, with requests.memory raised to the byte budgets when they need more. */}}
{{- define "infura-gateway.resources" -}}
{{- $res := deepCopy .Values.resources }}
{{- $req := $res.requests | default dict }}
{{- $budgetMi := div (add (int64 (include "infura-gateway.budgetBytes" .)) 1048575) 1048576 }}
{{- $have := 0.0 }}
{{- if $req.memory }}{{ $have = include "infura-gateway.bytes" $req.memory | float64 }}{{ end }}
{{- if lt $have (mulf $budgetMi 1048576.0) }}
{{- $_ := set $req "memory" (printf "%dMi" $budgetMi) }}
{{- end }}
{{- $_ := set $res "requests" $req }}
{{- toYaml $res }}
{{- end }}

{{/* Whether the gateway gets a Redis address (a value or a Secret key). */}}
{{- define "infura-gateway.redis" -}}
{{- if or .Values.redis.address (and .Values.redis.existingSecret .Values.redis.existingSecretAddressKey) }}true{{ end }}
{{- end }}

{{/* The Redis port, for the NetworkPolicy: from redis.address, else 6379. */}}
{{- define "infura-gateway.redisPort" -}}
{{- if .Values.redis.address }}{{ last (splitList ":" .Values.redis.address) }}{{ else }}6379{{ end }}
{{- end }}

{{/*
The gateway's configuration file (CONFIG_FILE), from config.upstreams (or
config.networks) and the sections next to it; empty without upstreams, networks, keys
or anonymous (with keys or
anonymous only, the upstream comes from the flags). Keys are the file's own
(snake_case); the gateway decodes it strictly.
*/}}
{{- define "infura-gateway.configFile" -}}
{{- with .Values.config }}
{{- if or .upstreams .networks .keys .anonymous }}
{{- $file := dict }}
{{- with .upstreams }}{{ $_ := set $file "upstreams" . }}{{ end }}
{{- with .networks }}{{ $_ := set $file "networks" . }}{{ end }}
{{- range $k := list "routing" "health" "keys" "plans" "costs" "anonymous" "clients" }}
{{- with index $.Values.config $k }}
{{- $_ := set $file $k . }}
{{- end }}
{{- end }}
{{- with .envAllow }}
{{- $_ := set $file "env_allow" . }}
{{- end }}
{{- toYaml $file }}
{{- end }}
{{- end }}
{{- end }}

{{/* The dashboard's uid: at most 40 characters, unique per namespace and release. */}}
{{- define "infura-gateway.dashboardUID" -}}
{{- $full := include "infura-gateway.fullname" . }}
{{- printf "%s-%s" ($full | trunc 27 | trimSuffix "-") (printf "%s/%s" .Release.Namespace $full | sha256sum | trunc 12) }}
{{- end }}

{{/* Name of the Secret holding the Infura credentials, empty when none. */}}
{{- define "infura-gateway.secretName" -}}
{{- if .Values.infura.existingSecret }}
{{- .Values.infura.existingSecret }}
{{- else if .Values.infura.projectId }}
{{- include "infura-gateway.fullname" . }}
{{- end }}
{{- end }}

{{/*
Container securityContext shared by the gateway and the test pod: the
restricted Pod Security Standard. Not configurable on purpose.
*/}}
{{- define "infura-gateway.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "infura-gateway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Cross-field checks the JSON schema cannot express. */}}
{{- define "infura-gateway.validate" -}}
{{- $l := .Values.lifecycle }}
{{- $needed := add $l.preStopSleepSeconds $l.drainDelaySeconds $l.shutdownTimeoutSeconds }}
{{- if le (int $l.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainDelaySeconds + shutdownTimeoutSeconds (%d), or the kubelet kills pods before websockets close" (int $l.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- $as := .Values.autoscaling }}
{{- if and $as.enabled (not (or $as.targetCPUUtilizationPercentage $as.targetMemoryUtilizationPercentage $as.targetInFlightPerPod $as.targetWebsocketsPerPod)) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage, targetMemoryUtilizationPercentage, targetInFlightPerPod or targetWebsocketsPerPod" }}
{{- end }}
{{- if and $as.enabled $as.targetInFlightPerPod (ge (int $as.targetInFlightPerPod) (int .Values.config.upstreamMaxConns)) }}
{{- fail (printf "autoscaling.targetInFlightPerPod (%d) must stay below config.upstreamMaxConns (%d): past it requests queue for a connection before the HPA sees a reason to scale" (int $as.targetInFlightPerPod) (int .Values.config.upstreamMaxConns)) }}
{{- end }}
{{- if and .Values.infura.projectSecret (not .Values.infura.projectId) }}
{{- fail "infura.projectSecret is set without infura.projectId" }}
{{- end }}
{{- if and .Values.infura.existingSecret .Values.infura.projectId }}
{{- fail "set either infura.existingSecret or infura.projectId/projectSecret, not both" }}
{{- end }}
{{- /* An upstream is required: without one the pods point at 127.0.0.1:8545 and never serve. */}}
{{- $c := .Values.config }}
{{- $_ := required "no upstream configured: set config.networks, config.upstreams, config.upstreamHttpUrl, or the Infura credentials (infura.existingSecret or infura.projectId)" (or $c.networks $c.upstreams $c.upstreamHttpUrl (include "infura-gateway.secretName" .)) }}
{{- if and $c.upstreams (or $c.upstreamHttpUrl $c.upstreamWsUrl) }}
{{- fail "set either config.upstreams (the configuration file) or config.upstreamHttpUrl/upstreamWsUrl, not both: the file replaces the upstream flags" }}
{{- end }}
{{- include "infura-gateway.validateNetworks" . }}
{{- $names := dict }}
{{- $primaries := 0 }}
{{- range $c.upstreams }}
{{- if hasKey $names .name }}
{{- fail (printf "config.upstreams: the name %q is used twice (names are metric labels)" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- if ne (.tier | default "primary") "fallback" }}{{ $primaries = add1 $primaries }}{{ end }}
{{- end }}
{{- if and $c.upstreams (eq $primaries 0) }}
{{- fail "config.upstreams: every upstream is a fallback; make at least one tier: primary" }}
{{- end }}
{{- range ($c.keys.entries | default list) }}
{{- if not (hasKey ($c.plans | default dict) .plan) }}
{{- fail (printf "config.keys.entries: key %q uses plan %q, which config.plans does not define" .name .plan) }}
{{- end }}
{{- end }}
{{- with $c.anonymous.plan }}
{{- if not (hasKey ($c.plans | default dict) .) }}
{{- fail (printf "config.anonymous.plan %q is not defined in config.plans" .) }}
{{- end }}
{{- end }}
{{- if and (not (or $c.upstreams $c.networks $c.keys $c.anonymous)) (or $c.routing $c.health $c.plans $c.costs $c.clients) }}
{{- fail "config.routing/health/plans/costs/clients go into the configuration file, which needs config.upstreams, config.networks, config.keys or config.anonymous" }}
{{- end }}
{{- /* Redis: the address from a value or from the Secret, the password only from a Secret. */}}
{{- $r := .Values.redis }}
{{- if and $r.address $r.existingSecretAddressKey }}
{{- fail "set either redis.address or redis.existingSecretAddressKey, not both" }}
{{- end }}
{{- if and $r.existingSecretAddressKey (not $r.existingSecret) }}
{{- fail "redis.existingSecretAddressKey needs redis.existingSecret" }}
{{- end }}
{{- if and $r.existingSecret (not (include "infura-gateway.redis" .)) }}
{{- fail "redis.existingSecret is set without an address: set redis.address or redis.existingSecretAddressKey" }}
{{- end }}
{{- /* The NLB must not cut connections the gateway is still draining. */}}
{{- $tga := index .Values.service.annotations "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes" | default "" }}
{{- range splitList "," $tga }}
{{- $kv := splitList "=" (trim .) }}
{{- if and (eq (len $kv) 2) (eq (first $kv) "deregistration_delay.timeout_seconds") }}
{{- if lt (int (last $kv)) (int $needed) }}
{{- fail (printf "deregistration_delay.timeout_seconds=%s is shorter than preStopSleepSeconds + drainDelaySeconds + shutdownTimeoutSeconds (%d): the NLB would reset connections the gateway is still draining" (last $kv) (int $needed)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.service.requirePodReadinessGate (not (include "infura-gateway.readinessGateLabelled" .)) }}
{{- $ns := lookup "v1" "Namespace" "" .Release.Namespace }}
{{- if $ns }}
{{- fail (printf "namespace %s lacks the label elbv2.k8s.aws/pod-readiness-gate-inject=enabled: without the AWS Load Balancer Controller's readiness gate a rollout removes old NLB targets before new ones are healthy (kubectl label namespace %s elbv2.k8s.aws/pod-readiness-gate-inject=enabled, then install again)" .Release.Namespace .Release.Namespace) }}
{{- end }}
{{- end }}
{{- if not .Values.resources.limits.memory }}
{{- fail "resources.limits.memory is required: GOMEMLIMIT is derived from it" }}
{{- end }}
{{- $budget := include "infura-gateway.budgetBytes" . | int64 }}
{{- if gt $budget (include "infura-gateway.goMemLimit" . | int64) }}
{{- fail (printf "the byte budgets (config.cacheMaxBytes + maxPendingBytes + the anonymous table + 32 KiB per maxConns + 64 MiB runtime = %d bytes) exceed GOMEMLIMIT (%s bytes, goMemLimitPercent of resources.limits.memory): raise the limit or lower the budgets" $budget (include "infura-gateway.goMemLimit" .)) }}
{{- end }}
{{- include "infura-gateway.validateExposure" . }}
{{- end }}

{{/*
"true" when the release namespace carries the AWS Load Balancer Controller's pod
readiness gate label; empty when it does not, or when there is no cluster to ask
(helm template, --dry-run=client).
*/}}
{{- define "infura-gateway.readinessGateLabelled" -}}
{{- $ns := lookup "v1" "Namespace" "" .Release.Namespace }}
{{- if $ns }}
{{- if eq (index ($ns.metadata.labels | default dict) "elbv2.k8s.aws/pod-readiness-gate-inject" | default "") "enabled" }}true{{ end }}
{{- end }}
{{- end }}

{{/* "true" when the Service is an NLB with ip targets (the readiness gate applies). */}}
{{- define "infura-gateway.nlbIPTargets" -}}
{{- if and (eq .Values.service.type "LoadBalancer") (eq (index .Values.service.annotations "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type" | default "") "ip") }}true{{ end }}
{{- end }}

{{/*
Ports of the upstream URLs other than the scheme's default (a node on :8545/:8546),
comma-separated, for the NetworkPolicy's egress.
*/}}
{{- define "infura-gateway.upstreamPorts" -}}
{{- $urls := list .Values.config.upstreamHttpUrl .Values.config.upstreamWsUrl }}
{{- $ups := .Values.config.upstreams | default list }}
{{- range (.Values.config.networks | default list) }}{{ $ups = concat $ups (.upstreams | default list) }}{{ end }}
{{- range $ups }}
{{- $urls = append $urls .http }}
{{- $urls = append $urls (.ws | default "") }}
{{- end }}
{{- $ports := list }}
{{- range $urls }}
{{- $m := regexFind "^[a-z]+://([^/@]*@)?[^/:@]+:[0-9]+" . }}
{{- if $m }}
{{- $p := last (splitList ":" $m) }}
{{- if not (has $p $ports) }}{{ $ports = append $ports $p }}{{ end }}
{{- else if regexMatch "^(http|ws)://[^/:]+(/|$)" . }}
{{- /* plain http/ws without a port: 80 (https/wss without one go to 443, above) */}}
{{- if not (has "80" $ports) }}{{ $ports = append $ports "80" }}{{ end }}
{{- end }}
{{- end }}
{{- join "," $ports }}
{{- end }}

{{/* The public Service's port: the NLB's TLS listener when a certificate is set. */}}
{{- define "infura-gateway.servicePort" -}}
{{- if and .Values.service.nlb.enabled .Values.service.nlb.certificateArn }}{{ .Values.service.nlb.tlsPort }}{{ else }}{{ .Values.service.port }}{{ end }}
{{- end }}

{{/*
The annotations the chart writes for service.nlb: scheme, TLS (ACM certificate, its
port, a TLS 1.3 policy) or a plaintext listener's idle timeout, PROXY protocol v2.
*/}}
{{- define "infura-gateway.nlbAnnotations" -}}
{{- $n := .Values.service.nlb }}
{{- $a := dict "service.beta.kubernetes.io/aws-load-balancer-scheme" $n.scheme }}
{{- if $n.certificateArn }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-ssl-cert" $n.certificateArn }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-ssl-ports" (toString $n.tlsPort) }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy" $n.sslNegotiationPolicy }}
{{- else }}
{{- $_ := set $a (printf "service.beta.kubernetes.io/aws-load-balancer-listener-attributes.TCP-%v" .Values.service.port) (printf "tcp.idle_timeout.seconds=%v" $n.idleTimeoutSeconds) }}
{{- end }}
{{- if $n.proxyProtocol }}
{{- $_ := set $a "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol" "*" }}
{{- end }}
{{- toYaml $a }}
{{- end }}

{{/*
"true" when the public Service is reachable from outside the cluster's network: a
LoadBalancer not marked internal. The AWS Load Balancer Controller's NLBs are
internal unless their scheme says otherwise; the in-tree AWS provider and most
clouds default to a public one.
*/}}
{{- define "infura-gateway.publicLB" -}}
{{- $s := .Values.service }}
{{- if eq $s.type "LoadBalancer" }}
{{- $a := $s.annotations | default dict }}
{{- $scheme := index $a "service.beta.kubernetes.io/aws-load-balancer-scheme" | default "" }}
{{- $lbc := or (eq ($s.loadBalancerClass | default "") "service.k8s.aws/nlb") (has (index $a "service.beta.kubernetes.io/aws-load-balancer-type" | default "") (list "external" "nlb-ip")) }}
{{- $internal := or (eq $scheme "internal") (and $lbc (eq $scheme "")) (eq (index $a "service.beta.kubernetes.io/aws-load-balancer-internal" | default "") "true") (eq (index $a "networking.gke.io/load-balancer-type" | default "") "Internal") (eq (index $a "service.beta.kubernetes.io/azure-load-balancer-internal" | default "") "true") }}
{{- if $s.nlb.enabled }}{{ $internal = eq $s.nlb.scheme "internal" }}{{ end }}
{{- if not $internal }}true{{ end }}
{{- end }}
{{- end }}

{{/* "true" when every call needs a key: config.keys has entries and required is not false. */}}
{{- define "infura-gateway.keysRequired" -}}
{{- $k := .Values.config.keys | default dict }}
{{- if and $k.entries (or (not (hasKey $k "required")) $k.required) }}true{{ end }}
{{- end }}

{{/* Closed by default: the checks of a public endpoint and of service.nlb. */}}
{{- define "infura-gateway.validateExposure" -}}
{{- $s := .Values.service }}
{{- $a := $s.annotations | default dict }}
{{- if $s.nlb.enabled }}
{{- if ne $s.type "LoadBalancer" }}
{{- fail "service.nlb.enabled needs service.type=LoadBalancer" }}
{{- end }}
{{- range $k, $_ := $a }}
{{- if or (has $k (list "service.beta.kubernetes.io/aws-load-balancer-scheme" "service.beta.kubernetes.io/aws-load-balancer-ssl-cert" "service.beta.kubernetes.io/aws-load-balancer-ssl-ports" "service.beta.kubernetes.io/aws-load-balancer-ssl-negotiation-policy" "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol")) (hasPrefix "service.beta.kubernetes.io/aws-load-balancer-listener-attributes." $k) }}
{{- fail (printf "service.annotations sets %s, which service.nlb writes: set it through service.nlb" $k) }}
{{- end }}
{{- end }}
{{- if and $s.nlb.proxyProtocol (not $.Values.config.trustedProxies) }}
{{- fail "service.nlb.proxyProtocol sends a PROXY header the gateway reads only from config.trustedProxies: set it to the VPC CIDR (Terraform does), or turn proxyProtocol off" }}
{{- end }}
{{- with $.Values.config.clients }}
{{- if and $s.nlb.proxyProtocol (hasKey . "proxy_protocol") (not .proxy_protocol) }}
{{- fail "config.clients.proxy_protocol is false while service.nlb.proxyProtocol sends PROXY headers: every request would be refused" }}
{{- end }}
{{- end }}
{{- end }}
{{- if include "infura-gateway.publicLB" . }}
{{- $aws := $s.nlb.enabled }}
{{- range $k, $_ := $a }}{{ if hasPrefix "service.beta.kubernetes.io/aws-load-balancer-" $k }}{{ $aws = true }}{{ end }}{{ end }}
{{- if and $aws (not (or $s.nlb.certificateArn (index $a "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"))) }}
{{- fail "an internet-facing load balancer would speak plaintext: set service.nlb.certificateArn (an ACM certificate; TLS ends at the NLB), or service.nlb.scheme=internal" }}
{{- end }}
{{- if not (include "infura-gateway.keysRequired" .) }}
{{- if not $s.allowAnonymous }}
{{- fail "an internet-facing endpoint without required keys is an open relay of your upstream quota: configure config.keys (entries, required), or set service.allowAnonymous=true with config.anonymous.plan, or service.nlb.scheme=internal" }}
{{- end }}
{{- if not ((.Values.config.anonymous | default dict).plan) }}
{{- fail "service.allowAnonymous on an internet-facing endpoint needs config.anonymous.plan: per-address limits for calls without a key" }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.image.requireDigest (not .Values.image.digest) }}
{{- fail "image.digest is required (image.requireDigest): deploy by digest, e.g. --set image.digest=sha256:... (Terraform passes the one ECR reports)" }}
{{- end }}
{{- end }}

{{/*
config.networks: what the schema cannot check (one entry at a time) and the gateway
would refuse at start: a name or alias used twice (both are path prefixes and the
name is a metric label), a host of two networks, two defaults, an upstream name twice
in one network, a network of fallbacks only, a plan naming an unknown network, and a
top-level upstream list or upstream URL next to the list (the gateway serves either).
*/}}
{{- define "infura-gateway.validateNetworks" -}}
{{- $c := .Values.config }}
{{- with $c.networks }}
{{- if $c.upstreams }}
{{- fail "set either config.networks or config.upstreams, not both: put the upstreams under their network" }}
{{- end }}
{{- if or $c.upstreamHttpUrl $c.upstreamWsUrl }}
{{- fail "set either config.networks or config.upstreamHttpUrl/upstreamWsUrl, not both: the file replaces the upstream flags" }}
{{- end }}
{{- $names := dict }}
{{- $nets := dict }}
{{- $hosts := dict }}
{{- $defaults := 0 }}
{{- range . }}
{{- $net := .name }}
{{- $_ := set $nets .name true }}
{{- range (prepend (.aliases | default list) .name) }}
{{- if hasKey $names . }}
{{- fail (printf "config.networks: %q is already the name or an alias of network %q (names and aliases are path prefixes; names are metric labels)" . (index $names .)) }}
{{- end }}
{{- $_ := set $names . $net }}
{{- end }}
{{- range (.hosts | default list) }}
{{- $h := lower . }}
{{- if hasKey $hosts $h }}
{{- fail (printf "config.networks: host %q is already a host of network %q" $h (index $hosts $h)) }}
{{- end }}
{{- $_ := set $hosts $h $net }}
{{- end }}
{{- if .default }}{{ $defaults = add1 $defaults }}{{ end }}
{{- $ups := dict }}
{{- $primaries := 0 }}
{{- range .upstreams }}
{{- if hasKey $ups .name }}
{{- fail (printf "config.networks: network %q: the upstream name %q is used twice (names are metric labels)" $net .name) }}
{{- end }}
{{- $_ := set $ups .name true }}
{{- if ne (.tier | default "primary") "fallback" }}{{ $primaries = add1 $primaries }}{{ end }}
{{- end }}
{{- if eq $primaries 0 }}
{{- fail (printf "config.networks: network %q: every upstream is a fallback; make at least one tier: primary" $net) }}
{{- end }}
{{- end }}
{{- if gt $defaults 1 }}
{{- fail "config.networks: more than one network says default: true" }}
{{- end }}
{{- range $plan, $p := ($c.plans | default dict) }}
{{- range ($p.networks | default list) }}
{{- if not (hasKey $nets .) }}
{{- fail (printf "config.plans.%s.networks: %q is not a configured network (config.networks)" $plan .) }}
{{- end }}
{{- end }}
{{- end }}
{{- else }}
{{- range $plan, $p := ($c.plans | default dict) }}
{{- range ($p.networks | default list) }}
{{- if ne . "default" }}
{{- fail (printf "config.plans.%s.networks: %q is not a configured network: without config.networks the one network is \"default\"" $plan .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

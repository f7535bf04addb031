# The gateway chart's values that Terraform decides (beyond values-eks.yaml), as YAML
# documents Helm deep-merges in order. A module of its own, without providers, so
# `./task lint:helm` renders the chart with exactly these documents offline.
# yamlencode keeps strings strings (an all-digit value stays quoted); each concern is
# its own document, so no conditional has to unify objects of different shapes.
locals {
  documents = concat(
    [yamlencode({
      metrics = {
        serviceMonitor = { enabled = var.install_monitoring }
        prometheusRule = { enabled = var.install_monitoring }
      }
      dashboards = { enabled = var.install_monitoring }
      # Enforced by the VPC CNI's network policy agent (enableNetworkPolicy).
      networkPolicy = {
        enabled          = true
        redisEgressCIDRs = [var.vpc_cidr]
        extraEgress      = [for p in var.egress_ports : { ports = [{ port = p, protocol = "TCP" }] }]
      }
      # Closed by default (issue 24): internal unless asked, TLS at the NLB with a
      # certificate, PROXY protocol v2 read from the VPC's addresses only (the NLB's),
      # so per-IP limits and logs see the client.
      service = {
        nlb = {
          enabled        = true
          scheme         = var.scheme
          certificateArn = var.certificate_arn
          proxyProtocol  = true
        }
        allowAnonymous = var.allow_anonymous
      }
      config = {
        trustedProxies = [var.vpc_cidr]
      }
    })],
    length(var.keys) == 0 ? [] : [yamlencode({
      config = {
        keys = { required = true, entries = [for k in var.keys : { for a, v in k : a => v if v != null }] }
      }
    })],
    length(var.plans) == 0 ? [] : [yamlencode({
      config = { plans = { for n, p in var.plans : n => { for a, v in p : a => v if v != null } } }
    })],
    var.anonymous_plan == "" ? [] : [yamlencode({ config = { anonymous = { plan = var.anonymous_plan } } })],
    # The HPA's per-pod gauges come through the Prometheus adapter, installed with
    # monitoring only: without it, CPU alone.
    var.install_monitoring ? [] : [yamlencode({ autoscaling = { targetInFlightPerPod = 0, targetWebsocketsPerPod = 0 } })],
    var.upstream_http_url == "" ? [] : [yamlencode({ config = { upstreamHttpUrl = var.upstream_http_url } })],
    var.upstream_ws_url == "" ? [] : [yamlencode({ config = { upstreamWsUrl = var.upstream_ws_url } })],
    length(var.upstreams) == 0 ? [] : [yamlencode({
      config = {
        upstreams      = [for u in var.upstreams : { for k, v in u : k => v if v != null }]
        envFromSecrets = var.upstream_secret_name == "" ? [] : [var.upstream_secret_name]
        envAllow       = var.upstream_env_allow
      }
    })],
    # Several networks: each with its upstreams, the same Secret behind their $${VAR}s.
    length(var.networks) == 0 ? [] : [yamlencode({
      config = {
        networks = [for n in var.networks : merge(
          { for k, v in n : k => v if v != null && k != "upstreams" },
          { upstreams = [for u in n.upstreams : { for k, v in u : k => v if v != null }] },
        )]
        envFromSecrets = var.upstream_secret_name == "" ? [] : [var.upstream_secret_name]
        envAllow       = var.upstream_env_allow
      }
    })],
    var.redis_address == "" ? [] : [yamlencode({
      redis = {
        address        = var.redis_address
        tls            = true
        existingSecret = var.redis_secret_name
      }
    })],
  )
}

# The gateway's namespace enforces Pod Security "restricted" (the chart's pods meet it;
# anything else is refused), at the cluster's version of the standard.
locals {
  namespace_labels = {
    "pod-security.kubernetes.io/enforce"         = "restricted"
    "pod-security.kubernetes.io/enforce-version" = "v${var.kubernetes_version}"
    "pod-security.kubernetes.io/audit"           = "restricted"
    "pod-security.kubernetes.io/warn"            = "restricted"
  }
}

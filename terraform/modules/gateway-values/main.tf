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
    })],
    var.upstream_http_url == "" ? [] : [yamlencode({ config = { upstreamHttpUrl = var.upstream_http_url } })],
    var.upstream_ws_url == "" ? [] : [yamlencode({ config = { upstreamWsUrl = var.upstream_ws_url } })],
    length(var.upstreams) == 0 ? [] : [yamlencode({
      config = {
        upstreams      = [for u in var.upstreams : { for k, v in u : k => v if v != null }]
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

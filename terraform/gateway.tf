# The gateway's namespace. The label makes the AWS Load Balancer Controller inject its
# pod readiness gate into every pod created here: a pod is Ready only once its NLB
# target is healthy, so a rollout never removes old targets before new ones serve.
resource "kubernetes_namespace_v1" "gateway" {
  metadata {
    name = var.gateway_namespace
    labels = {
      "elbv2.k8s.aws/pod-readiness-gate-inject" = "enabled"
    }
  }
}

# The values of the ${VAR} references in gateway_upstreams, as environment variables.
resource "kubernetes_secret_v1" "gateway_upstreams" {
  count = length(var.gateway_upstreams) > 0 ? 1 : 0

  metadata {
    name      = "infura-gateway-upstreams"
    namespace = kubernetes_namespace_v1.gateway.metadata[0].name
  }

  data = var.gateway_upstream_secrets
}

# The image is deployed by digest: the tag is immutable in ECR, the digest is what
# the kubelet pulls.
data "aws_ecr_image" "gateway" {
  repository_name = aws_ecr_repository.gateway.name
  image_tag       = var.gateway_image_tag
}

locals {
  # The chart's values beyond values-eks.yaml. Structured values go through yamlencode,
  # which keeps strings strings; null attributes are dropped (the chart's schema
  # rejects them).
  gateway_values = {
    metrics = {
      serviceMonitor = { enabled = var.install_monitoring }
      prometheusRule = { enabled = var.install_monitoring }
    }
    dashboards = { enabled = var.install_monitoring }
    config = merge(
      var.gateway_upstream_http_url == "" ? {} : { upstreamHttpUrl = var.gateway_upstream_http_url },
      var.gateway_upstream_ws_url == "" ? {} : { upstreamWsUrl = var.gateway_upstream_ws_url },
      length(var.gateway_upstreams) == 0 ? {} : {
        upstreams      = [for u in var.gateway_upstreams : { for k, v in u : k => v if v != null }]
        envFromSecrets = [kubernetes_secret_v1.gateway_upstreams[0].metadata[0].name]
      },
    )
    redis = var.redis_enabled ? {
      address        = local.redis_address
      tls            = true
      existingSecret = kubernetes_secret_v1.redis[0].metadata[0].name
    } : {}
    # Enforced by the VPC CNI's network policy agent (enableNetworkPolicy, main.tf).
    networkPolicy = {
      enabled          = true
      redisEgressCIDRs = [var.vpc_cidr]
      extraEgress = length(var.gateway_egress_ports) == 0 ? [] : [{
        ports = [for p in var.gateway_egress_ports : { port = p, protocol = "TCP" }]
      }]
    }
  }
}

# The gateway itself, from the chart in this repository with the EKS profile.
resource "helm_release" "gateway" {
  name      = "infura-gateway"
  chart     = "${path.module}/../helm/infura-gateway"
  namespace = kubernetes_namespace_v1.gateway.metadata[0].name
  wait      = true
  timeout   = 900

  values = [
    file("${path.module}/../helm/infura-gateway/values-eks.yaml"),
    yamlencode(local.gateway_values),
  ]

  # type = "string": an all-digit tag (20250101) must stay a string, or the chart's
  # schema rejects a number.
  set = [
    { name = "image.repository", value = aws_ecr_repository.gateway.repository_url, type = "string" },
    { name = "image.tag", value = var.gateway_image_tag, type = "string" },
    { name = "image.digest", value = data.aws_ecr_image.gateway.image_digest, type = "string" },
  ]

  # The chart stores these in a Secret and rolls pods when they change.
  set_sensitive = concat(
    var.infura_project_id == "" ? [] : [{ name = "infura.projectId", value = var.infura_project_id, type = "string" }],
    var.infura_project_secret == "" ? [] : [{ name = "infura.projectSecret", value = var.infura_project_secret, type = "string" }],
  )

  # The controller's webhooks must be up before the Service and the pods exist: the
  # Service webhook makes it an NLB (not a Classic Load Balancer), the pod webhook
  # injects the readiness gate. Karpenter's NodePool gives the pods room; the
  # monitoring CRDs let the chart render its ServiceMonitor and PrometheusRule.
  depends_on = [
    helm_release.aws_load_balancer_controller,
    helm_release.karpenter_nodes,
    helm_release.kube_prometheus_stack,
  ]
}

data "kubernetes_service_v1" "gateway" {
  metadata {
    name      = "infura-gateway"
    namespace = var.gateway_namespace
  }

  depends_on = [helm_release.gateway]
}

# The gateway's namespace. The first label makes the AWS Load Balancer Controller inject
# its pod readiness gate into every pod created here: a pod is Ready only once its NLB
# target is healthy, so a rollout never removes old targets before new ones serve. The
# module's labels enforce Pod Security "restricted" (helm/tests checks them).
resource "kubernetes_namespace_v1" "gateway" {
  metadata {
    name = var.gateway_namespace
    labels = merge(module.gateway_values.namespace_labels, {
      "elbv2.k8s.aws/pod-readiness-gate-inject" = "enabled"
    })
  }
}

# The values of the ${VAR} references in gateway_upstreams (or gateway_networks'
# upstreams), as environment variables.
resource "kubernetes_secret_v1" "gateway_upstreams" {
  count = length(var.gateway_upstreams) > 0 || length(var.gateway_networks) > 0 ? 1 : 0

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

# The chart's values that Terraform decides (helm/tests renders the chart with them).
module "gateway_values" {
  source = "./modules/gateway-values"

  install_monitoring   = var.install_monitoring
  kubernetes_version   = var.kubernetes_version
  vpc_cidr             = var.vpc_cidr
  scheme               = var.gateway_scheme
  certificate_arn      = var.gateway_certificate_arn
  allow_anonymous      = var.gateway_allow_anonymous
  keys                 = var.gateway_keys
  plans                = var.gateway_plans
  anonymous_plan       = var.gateway_anonymous_plan
  egress_ports         = var.gateway_egress_ports
  upstream_http_url    = var.gateway_upstream_http_url
  upstream_ws_url      = var.gateway_upstream_ws_url
  upstreams            = var.gateway_upstreams
  networks             = var.gateway_networks
  upstream_secret_name = try(kubernetes_secret_v1.gateway_upstreams[0].metadata[0].name, "")
  redis_address        = local.redis_address
  redis_secret_name    = try(kubernetes_secret_v1.redis[0].metadata[0].name, "")

  # The Secret's keys are variable names, not secrets: the file may read exactly those.
  upstream_env_allow = sort(nonsensitive(keys(var.gateway_upstream_secrets)))
}

# The gateway itself, from the chart in this repository with the EKS profile.
resource "helm_release" "gateway" {
  name      = "infura-gateway"
  chart     = "${path.module}/../helm/infura-gateway"
  namespace = kubernetes_namespace_v1.gateway.metadata[0].name
  wait      = true
  timeout   = 900

  values = concat([file("${path.module}/../helm/infura-gateway/values-eks.yaml")], module.gateway_values.documents)

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
    helm_release.prometheus_adapter,
  ]
}

data "kubernetes_service_v1" "gateway" {
  metadata {
    name      = "infura-gateway"
    namespace = var.gateway_namespace
  }

  depends_on = [helm_release.gateway]
}

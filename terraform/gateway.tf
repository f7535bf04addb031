# The gateway itself, from the chart in this repository with the EKS profile.
resource "helm_release" "gateway" {
  name             = "infura-gateway"
  chart            = "${path.module}/../helm/infura-gateway"
  namespace        = var.gateway_namespace
  create_namespace = true
  wait             = true
  timeout          = 600

  values = [file("${path.module}/../helm/infura-gateway/values-eks.yaml")]

  set = concat(
    [
      { name = "image.repository", value = aws_ecr_repository.gateway.repository_url },
      { name = "image.tag", value = var.gateway_image_tag },
      { name = "metrics.serviceMonitor.enabled", value = tostring(var.install_monitoring) },
      { name = "metrics.prometheusRule.enabled", value = tostring(var.install_monitoring) },
      { name = "dashboards.enabled", value = tostring(var.install_monitoring) },
    ],
    var.gateway_upstream_http_url == "" ? [] : [{ name = "config.upstreamHttpUrl", value = var.gateway_upstream_http_url }],
    var.gateway_upstream_ws_url == "" ? [] : [{ name = "config.upstreamWsUrl", value = var.gateway_upstream_ws_url }],
  )

  # The chart stores these in a Secret and rolls pods when they change.
  set_sensitive = concat(
    var.infura_project_id == "" ? [] : [{ name = "infura.projectId", value = var.infura_project_id }],
    var.infura_project_secret == "" ? [] : [{ name = "infura.projectSecret", value = var.infura_project_secret }],
  )

  # The controller's webhook must be up before the Service exists, or the
  # in-tree cloud provider creates a Classic Load Balancer instead of the NLB.
  depends_on = [helm_release.aws_load_balancer_controller, helm_release.kube_prometheus_stack]
}

data "kubernetes_service_v1" "gateway" {
  metadata {
    name      = "infura-gateway"
    namespace = var.gateway_namespace
  }

  depends_on = [helm_release.gateway]
}

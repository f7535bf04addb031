# AWS Load Balancer Controller: reconciles the gateway's LoadBalancer Service
# into an NLB with ip targets (see helm/infura-gateway/values-eks.yaml).
module "lb_controller_pod_identity" {
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.0"

  name = "${var.cluster_name}-aws-lbc"

  attach_aws_lb_controller_policy = true

  associations = {
    controller = {
      cluster_name    = module.eks.cluster_name
      namespace       = "kube-system"
      service_account = "aws-load-balancer-controller"
    }
  }
}

resource "helm_release" "aws_load_balancer_controller" {
  name       = "aws-load-balancer-controller"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = var.lb_controller_chart_version
  namespace  = "kube-system"
  wait       = true

  set = [
    { name = "clusterName", value = module.eks.cluster_name },
    { name = "region", value = var.region },
    { name = "vpcId", value = module.vpc.vpc_id },
    { name = "serviceAccount.name", value = "aws-load-balancer-controller" },
    { name = "replicaCount", value = "2" },
  ]

  depends_on = [module.lb_controller_pod_identity, module.eks]
}

# gp3 volumes through the EBS CSI add-on (main.tf), for Prometheus and Alertmanager.
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = "gp3"
  }
  storage_provisioner    = "ebs.csi.aws.com"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  reclaim_policy         = "Delete"
  parameters = {
    type      = "gp3"
    encrypted = "true"
  }

  depends_on = [module.eks]
}

# An SNS receiver: Alertmanager publishes with the credentials of an IRSA role allowed
# sns:Publish on that topic only (kube-prometheus-stack's Alertmanager service account).
locals {
  # Whether it is set is no secret (a count may not be sensitive); the ARN stays so.
  alert_sns = var.install_monitoring && nonsensitive(var.alert_receiver.sns_topic_arn != "")
}

data "aws_iam_policy_document" "alertmanager_sns" {
  count = local.alert_sns ? 1 : 0

  statement {
    actions   = ["sns:Publish"]
    resources = [var.alert_receiver.sns_topic_arn]
  }
}

resource "aws_iam_policy" "alertmanager_sns" {
  count = local.alert_sns ? 1 : 0

  name   = "${var.cluster_name}-alertmanager-sns"
  policy = data.aws_iam_policy_document.alertmanager_sns[0].json
}

module "alertmanager_sns_irsa" {
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version = "~> 5.60"
  count   = local.alert_sns ? 1 : 0

  role_name        = "${var.cluster_name}-alertmanager-sns"
  role_policy_arns = { sns = aws_iam_policy.alertmanager_sns[0].arn }

  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["monitoring:kube-prometheus-stack-alertmanager"]
    }
  }
}

# Prometheus's retention and volume, Alertmanager's volume and its configuration (the
# default route to alert_receiver), in a module without providers (helm/tests checks
# it with amtool check-config).
module "monitoring_values" {
  source = "./modules/monitoring-values"
  count  = var.install_monitoring ? 1 : 0

  alert_receiver         = var.alert_receiver
  sns_role_arn           = local.alert_sns ? module.alertmanager_sns_irsa[0].iam_role_arn : ""
  storage_class          = kubernetes_storage_class_v1.gp3.metadata[0].name
  prometheus_storage_gib = var.prometheus_storage_gib
  prometheus_retention   = var.prometheus_retention
}

# The custom metrics API for the gateway's HPA (in-flight requests and open websockets
# per pod), from kube-prometheus-stack's Prometheus.
resource "helm_release" "prometheus_adapter" {
  count = var.install_monitoring ? 1 : 0

  name       = "prometheus-adapter"
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "prometheus-adapter"
  version    = var.prometheus_adapter_chart_version
  namespace  = "monitoring"
  wait       = true

  values = module.monitoring_values[0].adapter_documents

  depends_on = [helm_release.kube_prometheus_stack]
}

# Prometheus Operator, Prometheus, Alertmanager and Grafana. Its CRDs are what
# the gateway chart's ServiceMonitor and PrometheusRule need; its Grafana
# sidecar loads ConfigMaps labelled grafana_dashboard=1 from every namespace.
resource "helm_release" "kube_prometheus_stack" {
  count = var.install_monitoring ? 1 : 0

  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_chart_version
  namespace        = "monitoring"
  create_namespace = true
  wait             = true
  timeout          = 900

  values = module.monitoring_values[0].documents

  set = [
    { name = "grafana.sidecar.dashboards.enabled", value = "true" },
    { name = "grafana.sidecar.dashboards.searchNamespace", value = "ALL" },
    # Select ServiceMonitors/PrometheusRules by the release label only.
    { name = "prometheus.prometheusSpec.serviceMonitorSelectorNilUsesHelmValues", value = "true" },
    { name = "prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues", value = "true" },
  ]

  depends_on = [module.eks, kubernetes_storage_class_v1.gp3]
}

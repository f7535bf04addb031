# Karpenter: nodes for the pods the managed node group cannot hold (the HPA scales the
# gateway to autoscaling.maxReplicas, and a 100% surge rollout doubles it for a few
# minutes). The submodule creates the controller's IAM role with an EKS Pod Identity
# association (kube-system/karpenter), the node IAM role with its access entry, and
# the SQS queue and EventBridge rules for interruption handling.
module "karpenter" {
  source  = "terraform-aws-modules/eks/aws//modules/karpenter"
  version = "~> 21.0"

  cluster_name = module.eks.cluster_name

  create_pod_identity_association = true
  namespace                       = "kube-system"
  service_account                 = "karpenter"

  # The EC2NodeClass names this role.
  node_iam_role_use_name_prefix = false
  node_iam_role_name            = "${var.cluster_name}-karpenter-node"
  node_iam_role_additional_policies = {
    AmazonSSMManagedInstanceCore = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
  }
}

# Public ECR serves the chart; a token avoids its anonymous pull limits. The
# authorization API exists in us-east-1 only.
data "aws_ecrpublic_authorization_token" "token" {
  region = "us-east-1"
}

resource "helm_release" "karpenter" {
  name                = "karpenter"
  namespace           = "kube-system"
  repository          = "oci://public.ecr.aws/karpenter"
  repository_username = data.aws_ecrpublic_authorization_token.token.user_name
  repository_password = data.aws_ecrpublic_authorization_token.token.password
  chart               = "karpenter"
  version             = var.karpenter_chart_version
  wait                = true

  values = [yamlencode({
    # On the managed node group, never on a node it could remove.
    nodeSelector = { "karpenter.sh/controller" = "true" }
    dnsPolicy    = "Default"
    settings = {
      clusterName       = module.eks.cluster_name
      clusterEndpoint   = module.eks.cluster_endpoint
      interruptionQueue = module.karpenter.queue_name
    }
    webhook = { enabled = false }
  })]

  # The whole EKS module: the managed node group the controller runs on included.
  depends_on = [module.karpenter, module.eks]
}

# The EC2NodeClass and NodePool, from a local chart: a helm release, unlike
# kubernetes_manifest, does not need Karpenter's CRDs to exist at plan time.
resource "helm_release" "karpenter_nodes" {
  name      = "karpenter-nodes"
  namespace = "kube-system"
  chart     = "${path.module}/charts/karpenter-nodes"

  values = [yamlencode({
    clusterName   = module.eks.cluster_name
    nodeRole      = module.karpenter.node_iam_role_name
    amiAlias      = var.karpenter_ami_alias
    capacityTypes = var.karpenter_capacity_types
    cpuLimit      = var.karpenter_cpu_limit
    tags          = var.tags
  })]

  depends_on = [helm_release.karpenter]
}

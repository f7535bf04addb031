# EKS environment for infura-gateway: VPC, EKS (AL2023 managed nodes for the system,
# Karpenter for the rest), ECR, AWS Load Balancer Controller (EKS Pod Identity),
# ElastiCache (Valkey) for shared limits, optional kube-prometheus-stack, and the
# gateway chart from ../helm/infura-gateway.

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  azs = slice(data.aws_availability_zones.available.names, 0, var.az_count)

  # variables.tf checks that this plan neither overlaps nor leaves the VPC.
  private_subnets = [for i in range(var.az_count) : cidrsubnet(var.vpc_cidr, var.subnet_plan.private_newbits, i)]
  public_subnets  = [for i in range(var.az_count) : cidrsubnet(var.vpc_cidr, var.subnet_plan.public_newbits, var.subnet_plan.public_offset + i)]

  # Karpenter finds the subnets and the node security group by this tag.
  karpenter_discovery = { "karpenter.sh/discovery" = var.cluster_name }
}

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 6.0"

  name = var.cluster_name
  cidr = var.vpc_cidr
  azs  = local.azs

  # /20 private subnets (pods get VPC IPs with the VPC CNI), /24 public ones.
  private_subnets = local.private_subnets
  public_subnets  = local.public_subnets

  enable_nat_gateway = true
  single_nat_gateway = var.single_nat_gateway

  # Subnet discovery of the AWS Load Balancer Controller: internet-facing
  # NLBs go to subnets tagged role/elb, internal ones to role/internal-elb.
  public_subnet_tags = {
    "kubernetes.io/role/elb"                    = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  }
  private_subnet_tags = merge(local.karpenter_discovery, {
    "kubernetes.io/role/internal-elb"           = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  })
}

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 21.0"

  name               = var.cluster_name
  kubernetes_version = var.kubernetes_version

  endpoint_public_access       = true
  endpoint_public_access_cidrs = var.api_allowed_cidrs

  # Access entries only (no aws-auth ConfigMap). The identity running terraform
  # administers the cluster (helm releases below); cluster_admin_arns and
  # cluster_viewer_arns get cluster-scoped access policies.
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true
  access_entries = merge(
    { for arn in var.cluster_admin_arns : "admin-${arn}" => {
      principal_arn = arn
      policy_associations = {
        admin = {
          policy_arn   = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    } },
    { for arn in var.cluster_viewer_arns : "viewer-${arn}" => {
      principal_arn = arn
      policy_associations = {
        view = {
          policy_arn   = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
          access_scope = { type = "cluster" }
        }
      }
    } },
  )

  # Pinned versions (eks_addon_versions): an add-on changes when the variable does,
  # never by itself (the module's default is the most recent version).
  addons = {
    coredns = {
      addon_version               = var.eks_addon_versions["coredns"]
      resolve_conflicts_on_update = "OVERWRITE"
    }
    kube-proxy = {
      addon_version               = var.eks_addon_versions["kube-proxy"]
      resolve_conflicts_on_update = "OVERWRITE"
    }
    vpc-cni = {
      addon_version               = var.eks_addon_versions["vpc-cni"]
      before_compute              = true
      resolve_conflicts_on_update = "OVERWRITE"
      # The network policy agent: without it the chart's NetworkPolicy is accepted
      # and enforces nothing.
      configuration_values = jsonencode({
        enableNetworkPolicy = "true"
      })
    }
    # Persistent volumes (gp3) for Prometheus and Alertmanager; its controller's AWS
    # credentials come from an IRSA role (ebs_csi_irsa below).
    aws-ebs-csi-driver = {
      addon_version               = var.eks_addon_versions["aws-ebs-csi-driver"]
      service_account_role_arn    = module.ebs_csi_irsa.iam_role_arn
      resolve_conflicts_on_update = "OVERWRITE"
    }
    # Pod Identity for the AWS credentials of the load balancer controller and Karpenter.
    eks-pod-identity-agent = {
      addon_version               = var.eks_addon_versions["eks-pod-identity-agent"]
      before_compute              = true
      resolve_conflicts_on_update = "OVERWRITE"
    }
  }

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  # Karpenter's nodes get this security group (it selects it by tag); ElastiCache
  # admits it, and nothing else.
  node_security_group_tags = local.karpenter_discovery

  # The system nodes: controllers (Karpenter must not run on nodes it manages),
  # CoreDNS, monitoring. The gateway's pods scale onto Karpenter's nodes.
  eks_managed_node_groups = {
    default = {
      ami_type       = "AL2023_x86_64_STANDARD"
      instance_types = var.node_instance_types
      capacity_type  = var.node_capacity_type

      min_size     = var.node_min_size
      max_size     = var.node_max_size
      desired_size = var.node_desired_size

      labels = {
        "karpenter.sh/controller" = "true"
      }
    }
  }
}

# The EBS CSI controller's IAM role, assumed through the cluster's OIDC provider (IRSA)
# by kube-system/ebs-csi-controller-sa only, with AWS's managed EBS CSI policy.
module "ebs_csi_irsa" {
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version = "~> 5.60"

  role_name             = "${var.cluster_name}-ebs-csi"
  attach_ebs_csi_policy = true

  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:ebs-csi-controller-sa"]
    }
  }
}

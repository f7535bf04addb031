variable "region" {
  description = "AWS region for the VPC, the EKS cluster and the ECR repository."
  type        = string
  default     = "eu-west-1"
}

variable "cluster_name" {
  description = "Name of the EKS cluster; also prefixes the VPC and IAM roles."
  type        = string
  default     = "infura-gateway"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}$", var.cluster_name))
    error_message = "cluster_name: lowercase letters, digits and dashes, 2-39 characters, starting with a letter."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the chart needs 1.30+ for the native preStop sleep)."
  type        = string
  default     = "1.33"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into public and private subnets across the availability zones."
  type        = string
  default     = "10.42.0.0/16"
}

variable "az_count" {
  description = "Number of availability zones to spread subnets and nodes over."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be between 2 and 4."
  }
}

variable "single_nat_gateway" {
  description = "Use one NAT gateway for all zones (cheaper, not zone-redundant). Set false in production."
  type        = bool
  default     = true
}

variable "api_allowed_cidrs" {
  description = "CIDR blocks allowed to reach the public EKS API endpoint."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "node_instance_types" {
  description = "Instance types of the AL2023 managed node group."
  type        = list(string)
  default     = ["m7i.large", "m6i.large"]
}

variable "node_capacity_type" {
  description = "ON_DEMAND or SPOT for the managed node group."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.node_capacity_type)
    error_message = "node_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "node_min_size" {
  description = "Minimum number of nodes in the managed node group."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Maximum number of nodes in the managed node group."
  type        = number
  default     = 6
}

variable "node_desired_size" {
  description = "Initial number of nodes in the managed node group (later changes are left to autoscaling)."
  type        = number
  default     = 3
}

variable "ecr_repository_name" {
  description = "Name of the ECR repository for the gateway image."
  type        = string
  default     = "infura-gateway"
}

variable "ecr_untagged_expiry_days" {
  description = "Days after which untagged images are deleted from ECR."
  type        = number
  default     = 14
}

variable "lb_controller_chart_version" {
  description = "Version of the aws-load-balancer-controller Helm chart (eks-charts)."
  type        = string
  default     = "1.13.4"
}

variable "install_monitoring" {
  description = "Install kube-prometheus-stack and enable the gateway's ServiceMonitor, PrometheusRule and Grafana dashboard."
  type        = bool
  default     = true
}

variable "kube_prometheus_stack_chart_version" {
  description = "Version of the kube-prometheus-stack Helm chart (prometheus-community)."
  type        = string
  default     = "75.15.1"
}

variable "gateway_namespace" {
  description = "Kubernetes namespace of the gateway release."
  type        = string
  default     = "infura-gateway"
}

variable "gateway_image_tag" {
  description = "Tag of the gateway image in ECR to deploy (tags are immutable: push a new tag per release)."
  type        = string
}

variable "infura_project_id" {
  description = "Infura project ID. Empty to use gateway_upstream_http_url/ws_url instead."
  type        = string
  default     = ""
  sensitive   = true
}

variable "infura_project_secret" {
  description = "Infura project secret (optional, only if the project requires it)."
  type        = string
  default     = ""
  sensitive   = true
}

variable "gateway_upstream_http_url" {
  description = "Upstream JSON-RPC HTTP URL for a self-hosted node; empty keeps the chart default."
  type        = string
  default     = ""
}

variable "gateway_upstream_ws_url" {
  description = "Upstream JSON-RPC websocket URL for a self-hosted node; empty keeps the chart default."
  type        = string
  default     = ""
}

variable "tags" {
  description = "Tags applied to every AWS resource."
  type        = map(string)
  default = {
    Project   = "infura-gateway"
    ManagedBy = "terraform"
  }
}

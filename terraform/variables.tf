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
  description = "EKS Kubernetes version (the chart needs 1.30+ for the native preStop sleep). Bump eks_addon_versions with it."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.(3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version: a minor version such as 1.33 (1.30 or later)."
  }
}

variable "eks_addon_versions" {
  description = <<-EOT
    Pinned EKS add-on versions, for kubernetes_version (defaults: EKS 1.33). A new one:
    aws eks describe-addon-versions --kubernetes-version 1.33 --addon-name vpc-cni --query 'addons[].addonVersions[].addonVersion'
    kube-proxy must match the cluster's minor version.
  EOT
  type        = map(string)
  default = {
    "coredns"                = "v1.12.4-eksbuild.1"
    "kube-proxy"             = "v1.33.5-eksbuild.2"
    "vpc-cni"                = "v1.20.1-eksbuild.3"
    "eks-pod-identity-agent" = "v1.3.10-eksbuild.2"
    "aws-ebs-csi-driver"     = "v1.47.0-eksbuild.1"
  }

  validation {
    condition     = length(setsubtract(["coredns", "kube-proxy", "vpc-cni", "eks-pod-identity-agent", "aws-ebs-csi-driver"], keys(var.eks_addon_versions))) == 0
    error_message = "eks_addon_versions must pin coredns, kube-proxy, vpc-cni, eks-pod-identity-agent and aws-ebs-csi-driver."
  }
  validation {
    condition     = alltrue([for v in values(var.eks_addon_versions) : can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+-eksbuild\\.[0-9]+$", v))])
    error_message = "eks_addon_versions: each version is an EKS add-on version such as v1.20.1-eksbuild.3, never latest."
  }
  validation {
    condition     = startswith(lookup(var.eks_addon_versions, "kube-proxy", ""), "v${var.kubernetes_version}.")
    error_message = "eks_addon_versions[\"kube-proxy\"] must match kubernetes_version (v<minor>.<patch>-eksbuild.<n>): bump the add-ons with the cluster."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC (IPv4, /16 to /20); split into public and private subnets across the availability zones."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("^[0-9.]+/(1[6-9]|20)$", var.vpc_cidr))
    error_message = "vpc_cidr: an IPv4 CIDR from /16 to /20, e.g. 10.42.0.0/16."
  }
}

variable "subnet_plan" {
  description = "How vpc_cidr is split: private subnet i is cidrsubnet(vpc_cidr, private_newbits, i), public subnet i is cidrsubnet(vpc_cidr, public_newbits, public_offset + i). The defaults give /20 private and /24 public subnets in a /16."
  type = object({
    private_newbits = number
    public_newbits  = number
    public_offset   = number
  })
  default = {
    private_newbits = 4
    public_newbits  = 8
    public_offset   = 48
  }

  validation {
    condition     = var.subnet_plan.private_newbits >= 1 && var.subnet_plan.public_newbits >= var.subnet_plan.private_newbits && var.subnet_plan.public_offset >= 0
    error_message = "subnet_plan: private_newbits >= 1, public_newbits >= private_newbits (public subnets are the smaller ones), public_offset >= 0."
  }
}

variable "az_count" {
  description = "Number of availability zones to spread subnets and nodes over."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6."
  }
  # The subnets must not overlap and must fit in the VPC. Measured in addresses from
  # the start of vpc_cidr: the private subnets cover [0, az_count * private size), the
  # public ones start at public_offset * public size.
  validation {
    condition = try(
      var.az_count * pow(2, 32 - tonumber(split("/", var.vpc_cidr)[1]) - var.subnet_plan.private_newbits)
      <= var.subnet_plan.public_offset * pow(2, 32 - tonumber(split("/", var.vpc_cidr)[1]) - var.subnet_plan.public_newbits),
      false
    )
    error_message = "az_count: the private subnets overlap the public ones (subnet_plan.public_offset is too low for this many zones). With the default plan, 4 zones need public_offset >= 64, 5 need 80, 6 need 96."
  }
  validation {
    condition     = var.subnet_plan.public_offset + var.az_count <= pow(2, var.subnet_plan.public_newbits)
    error_message = "az_count: the public subnets do not fit in vpc_cidr (public_offset + az_count > 2^public_newbits)."
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

variable "cluster_admin_arns" {
  description = "IAM principals (roles or users) given cluster-admin through EKS access entries (AmazonEKSClusterAdminPolicy). The identity running Terraform gets it too (enable_cluster_creator_admin_permissions)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_admin_arns : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", a))])
    error_message = "cluster_admin_arns: IAM role or user ARNs."
  }
}

variable "cluster_viewer_arns" {
  description = "IAM principals given read-only access through EKS access entries (AmazonEKSViewPolicy)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.cluster_viewer_arns : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", a))])
    error_message = "cluster_viewer_arns: IAM role or user ARNs."
  }
}

variable "node_instance_types" {
  description = "Instance types of the AL2023 managed node group (system pods, the Karpenter controller; Karpenter adds nodes for the rest)."
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

variable "karpenter_chart_version" {
  description = "Version of the Karpenter Helm chart (oci://public.ecr.aws/karpenter/karpenter); Karpenter 1.5+ supports EKS 1.33."
  type        = string
  default     = "1.6.0"

  validation {
    condition     = can(regex("^1\\.[0-9]+\\.[0-9]+$", var.karpenter_chart_version))
    error_message = "karpenter_chart_version: a Karpenter v1 release such as 1.6.0."
  }
}

variable "karpenter_ami_alias" {
  description = "AMI of Karpenter's nodes as an EC2NodeClass alias: al2023@<release of awslabs/amazon-eks-ami>. Pinned, so new AMIs roll out when you bump it (al2023@latest would replace nodes on every AMI release)."
  type        = string
  default     = "al2023@v20250807"

  validation {
    condition     = can(regex("^al2023@(v[0-9]{8}|latest)$", var.karpenter_ami_alias))
    error_message = "karpenter_ami_alias: al2023@vYYYYMMDD (or al2023@latest)."
  }
}

variable "karpenter_capacity_types" {
  description = "Capacity types Karpenter may launch. Spot interruptions close every websocket of the node: keep on-demand for the gateway unless clients tolerate it."
  type        = list(string)
  default     = ["on-demand"]

  validation {
    condition     = length(var.karpenter_capacity_types) > 0 && alltrue([for c in var.karpenter_capacity_types : contains(["on-demand", "spot"], c)])
    error_message = "karpenter_capacity_types: on-demand and/or spot."
  }
}

variable "karpenter_cpu_limit" {
  description = "Most vCPUs Karpenter may provision in total. It must cover autoscaling.maxReplicas pods twice during a 100% surge rollout (values-eks.yaml: 12 x 500m x 2 = 12 vCPUs) plus headroom."
  type        = number
  default     = 64

  validation {
    condition     = var.karpenter_cpu_limit >= 16
    error_message = "karpenter_cpu_limit: at least 16 vCPUs (a 100% surge rollout of the EKS profile's 12 pods needs 12)."
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

# Alerts reach a person (issue 24, N3): Alertmanager's default route goes to these.
variable "alert_receiver" {
  description = "Where the gateway's alerts go: a Slack incoming webhook (slack_webhook_url, optional slack_channel), a PagerDuty Events API v2 routing key (pagerduty_routing_key) and/or an SNS topic ARN (sns_topic_arn, in this account; Alertmanager publishes through an IRSA role). The first of Slack, SNS, PagerDuty takes every alert; SNS next to Slack gets every alert too, PagerDuty next to either the critical ones. Required with install_monitoring. Kept in the state and in Alertmanager's Secret."
  type = object({
    slack_webhook_url     = optional(string, "")
    slack_channel         = optional(string, "")
    pagerduty_routing_key = optional(string, "")
    sns_topic_arn         = optional(string, "")
  })
  default   = {}
  sensitive = true

  validation {
    condition     = !var.install_monitoring || var.alert_receiver.slack_webhook_url != "" || var.alert_receiver.pagerduty_routing_key != "" || var.alert_receiver.sns_topic_arn != ""
    error_message = "install_monitoring needs alert_receiver (slack_webhook_url, pagerduty_routing_key and/or sns_topic_arn): without one, alerts reach nobody."
  }
  validation {
    condition     = var.alert_receiver.slack_webhook_url == "" || can(regex("^https://", var.alert_receiver.slack_webhook_url))
    error_message = "alert_receiver.slack_webhook_url: an https:// incoming webhook URL."
  }
  validation {
    condition     = var.alert_receiver.sns_topic_arn == "" || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$", var.alert_receiver.sns_topic_arn))
    error_message = "alert_receiver.sns_topic_arn: an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)."
  }
}

variable "prometheus_storage_gib" {
  description = "Prometheus's gp3 volume (EBS CSI add-on) in GiB. retentionSize is 85 % of it. The gateway's series take roughly 1-2 GiB a day per 10 pods at a 15 s scrape: 50 GiB holds prometheus_retention (15 d) with room."
  type        = number
  default     = 50

  validation {
    condition     = var.prometheus_storage_gib >= 10
    error_message = "prometheus_storage_gib: at least 10."
  }
}

variable "prometheus_retention" {
  description = "How long Prometheus keeps samples (Prometheus duration, e.g. 15d); retentionSize (85 % of the volume) drops older blocks first if the volume fills."
  type        = string
  default     = "15d"

  validation {
    condition     = can(regex("^[0-9]+(h|d|w|y)$", var.prometheus_retention))
    error_message = "prometheus_retention: a Prometheus duration such as 15d."
  }
}

variable "prometheus_adapter_chart_version" {
  description = "Version of the prometheus-adapter Helm chart (prometheus-community): the custom metrics API the gateway's HPA reads in-flight requests and websockets from."
  type        = string
  default     = "4.14.1"
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
  description = "Tag of the gateway image in ECR to deploy (tags are immutable: push a new tag per release). Deployed by the digest ECR reports for it; passed to Helm as a string, so an all-digit tag stays a tag."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.gateway_image_tag))
    error_message = "gateway_image_tag: a Docker tag (letters, digits, _ . -, at most 128 characters)."
  }
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
  description = "Upstream JSON-RPC HTTP URL of a single self-hosted node or provider. One of infura_project_id, this, gateway_upstreams or gateway_networks is required."
  type        = string
  default     = ""

  validation {
    condition     = var.gateway_upstream_http_url == "" || can(regex("^https?://", var.gateway_upstream_http_url))
    error_message = "gateway_upstream_http_url: an http:// or https:// URL."
  }
  # It is rendered into the Deployment in clear: a URL with credentials goes in
  # gateway_upstreams, as $${VAR} references.
  validation {
    condition     = !can(regex("^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*[^}/@]@|/v3/[0-9a-fA-F]{32}|/v2/[A-Za-z0-9_-]{20,}", var.gateway_upstream_http_url))
    error_message = "gateway_upstream_http_url: no credentials in it (a user:password@ part, a provider key in the path): use gateway_upstreams with $${VAR} references, the values in gateway_upstream_secrets."
  }
  # Without an upstream the pods point at 127.0.0.1:8545, never serve, and the helm
  # release waits until it times out: refuse it at plan time instead.
  validation {
    condition     = var.gateway_upstream_http_url != "" || var.infura_project_id != "" || length(var.gateway_upstreams) > 0 || length(var.gateway_networks) > 0
    error_message = "No upstream: set infura_project_id (TF_VAR_infura_project_id), gateway_upstream_http_url, gateway_upstreams or gateway_networks."
  }
  validation {
    condition     = !(length(var.gateway_upstreams) > 0 && (var.gateway_upstream_http_url != "" || var.gateway_upstream_ws_url != ""))
    error_message = "Set either gateway_upstreams (the configuration file) or gateway_upstream_http_url/ws_url, not both."
  }
  # The networks carry their own upstreams (checked here: a validation of
  # gateway_networks referring back to this variable would be a cycle).
  validation {
    condition     = !(length(var.gateway_networks) > 0 && (var.gateway_upstream_http_url != "" || var.gateway_upstream_ws_url != ""))
    error_message = "Set either gateway_networks or gateway_upstream_http_url/ws_url, not both: the networks carry their own upstreams."
  }
}

variable "gateway_upstream_ws_url" {
  description = "Upstream JSON-RPC websocket URL of the single upstream; \"off\" disables the websocket paths; empty keeps the chart default (Infura's with infura_project_id)."
  type        = string
  default     = ""

  validation {
    condition     = contains(["", "off"], var.gateway_upstream_ws_url) || can(regex("^wss?://", var.gateway_upstream_ws_url))
    error_message = "gateway_upstream_ws_url: a ws:// or wss:// URL, or off."
  }
  validation {
    condition     = !can(regex("^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*[^}/@]@|/v3/[0-9a-fA-F]{32}|/v2/[A-Za-z0-9_-]{20,}", var.gateway_upstream_ws_url))
    error_message = "gateway_upstream_ws_url: no credentials in it (a user:password@ part, a provider key in the path): use gateway_upstreams with $${VAR} references, the values in gateway_upstream_secrets."
  }
}

variable "gateway_upstreams" {
  description = "Several upstreams, rendered by the chart into the gateway's configuration file (config.upstreams). Secrets as $${VAR} references only, with VAR in gateway_upstream_secrets."
  type = list(object({
    name          = string
    http          = string
    ws            = optional(string)
    user          = optional(string)
    password      = optional(string)
    tier          = optional(string, "primary")
    weight        = optional(number)
    max_in_flight = optional(number)
    archive       = optional(bool)
    methods = optional(object({
      allow = optional(list(string), [])
      deny  = optional(list(string), [])
    }))
  }))
  default = []

  validation {
    condition     = alltrue([for u in var.gateway_upstreams : can(regex("^[a-z0-9_-]+$", u.name))]) && length(distinct([for u in var.gateway_upstreams : u.name])) == length(var.gateway_upstreams)
    error_message = "gateway_upstreams: names are unique and match [a-z0-9_-]+ (they are metric labels)."
  }
  validation {
    condition     = alltrue([for u in var.gateway_upstreams : contains(["primary", "fallback"], u.tier)]) && (length(var.gateway_upstreams) == 0 || anytrue([for u in var.gateway_upstreams : u.tier == "primary"]))
    error_message = "gateway_upstreams: tier is primary or fallback, and at least one upstream is primary."
  }
  validation {
    condition     = alltrue([for u in var.gateway_upstreams : alltrue([for s in [u.user, u.password] : s == null || can(regex("^$|^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$", s))])])
    error_message = "gateway_upstreams: user and password are $${VAR} references (the value goes in gateway_upstream_secrets), never the secret itself."
  }
  validation {
    condition     = alltrue([for u in var.gateway_upstreams : alltrue([for s in [u.http, u.ws] : s == null || !can(regex("^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*[^}/@]@|/v3/[0-9a-fA-F]{32}|/v2/[A-Za-z0-9_-]{20,}", s))])])
    error_message = "gateway_upstreams: http and ws carry no literal credentials (a user:password@ part, a provider key in the path): $${VAR} references, the values in gateway_upstream_secrets."
  }
  validation {
    condition     = length(var.gateway_upstreams) == 0 || length(var.gateway_networks) == 0
    error_message = "Set either gateway_networks or gateway_upstreams, not both: put the upstreams under their network."
  }
}

# Several networks (chains) in one gateway (the chart's config.networks): each served
# under /<name>/ and on its hosts (gateway_dns_names points them at the NLB).
variable "gateway_networks" {
  description = "Networks served at once, instead of gateway_upstreams (the chart's config.networks): name ([a-z0-9-], the path prefix and metric label), chain_id, aliases, hosts (Host header values: the certificate must cover them), default, deny_methods and upstreams (as gateway_upstreams). Secrets as $${VAR} references only, with VAR in gateway_upstream_secrets."
  type = list(object({
    name         = string
    chain_id     = number
    aliases      = optional(list(string))
    hosts        = optional(list(string))
    default      = optional(bool)
    deny_methods = optional(list(string))
    upstreams = list(object({
      name          = string
      http          = string
      ws            = optional(string)
      user          = optional(string)
      password      = optional(string)
      tier          = optional(string, "primary")
      weight        = optional(number)
      max_in_flight = optional(number)
      archive       = optional(bool)
      methods = optional(object({
        allow = optional(list(string), [])
        deny  = optional(list(string), [])
      }))
    }))
  }))
  default = []

  validation {
    condition     = alltrue(flatten([for n in var.gateway_networks : [for a in concat([n.name], coalesce(n.aliases, [])) : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", a)) && !contains(["v3", "ws", "health", "readyz", "blocknumber", "gasprice", "blockbynumber", "txbyblockandindex", "socket2socket", "status", "metrics", "debug"], a)]]))
    error_message = "gateway_networks: names and aliases are 1-63 of a-z, 0-9 and - (path prefixes and metric labels), and none of the gateway's own routes (v3, ws, health, ...)."
  }
  validation {
    condition     = length(distinct(flatten([for n in var.gateway_networks : concat([n.name], coalesce(n.aliases, []))]))) == length(flatten([for n in var.gateway_networks : concat([n.name], coalesce(n.aliases, []))]))
    error_message = "gateway_networks: a name or alias is used twice."
  }
  validation {
    condition     = alltrue([for n in var.gateway_networks : n.chain_id >= 1 && floor(n.chain_id) == n.chain_id])
    error_message = "gateway_networks: chain_id is the chain's id (a positive integer), which every upstream of the network must answer to eth_chainId."
  }
  validation {
    condition     = alltrue(flatten([for n in var.gateway_networks : [for h in coalesce(n.hosts, []) : can(regex("^(\\*\\.)?[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$", h))]])) && length(distinct(flatten([for n in var.gateway_networks : [for h in coalesce(n.hosts, []) : lower(h)]]))) == length(flatten([for n in var.gateway_networks : coalesce(n.hosts, [])]))
    error_message = "gateway_networks: hosts are host names (no scheme or port) or *.suffix, each of one network only."
  }
  validation {
    condition     = length([for n in var.gateway_networks : n if coalesce(n.default, false)]) <= 1
    error_message = "gateway_networks: at most one network says default = true."
  }
  validation {
    condition     = alltrue([for n in var.gateway_networks : length(n.upstreams) > 0 && anytrue([for u in n.upstreams : u.tier == "primary"]) && alltrue([for u in n.upstreams : contains(["primary", "fallback"], u.tier) && can(regex("^[a-z0-9_-]+$", u.name))]) && length(distinct([for u in n.upstreams : u.name])) == length(n.upstreams)])
    error_message = "gateway_networks: every network has upstreams, at least one primary, tiers primary or fallback, names unique in the network and matching [a-z0-9_-]+."
  }
  validation {
    condition     = alltrue(flatten([for n in var.gateway_networks : [for u in n.upstreams : alltrue([for s in [u.user, u.password] : s == null || can(regex("^$|^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$", s))])]]))
    error_message = "gateway_networks: user and password are $${VAR} references (the value goes in gateway_upstream_secrets), never the secret itself."
  }
  validation {
    condition     = alltrue(flatten([for n in var.gateway_networks : [for u in n.upstreams : alltrue([for s in [u.http, u.ws] : s == null || !can(regex("^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*[^}/@]@|/v3/[0-9a-fA-F]{32}|/v2/[A-Za-z0-9_-]{20,}", s))])]]))
    error_message = "gateway_networks: upstream http and ws URLs carry no literal credentials (a user:password@ part, a provider key in the path): $${VAR} references, the values in gateway_upstream_secrets."
  }
  validation {
    condition     = alltrue(flatten([for p in values(var.gateway_plans) : [for x in coalesce(p.networks, []) : contains(length(var.gateway_networks) > 0 ? [for n in var.gateway_networks : n.name] : ["default"], x)]]))
    error_message = "gateway_plans: networks names a network that gateway_networks does not define (without gateway_networks the one network is \"default\")."
  }
}

variable "gateway_upstream_secrets" {
  description = "Values of the $${VAR} references of gateway_upstreams (e.g. ALCHEMY_KEY), stored in a Kubernetes Secret the pods read as environment variables; their names are the file's env_allow (the only variables besides GATEWAY_* and the Infura credentials it may read). They end up in the Terraform state: keep it encrypted."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition     = alltrue([for k in keys(var.gateway_upstream_secrets) : can(regex("^[A-Za-z_][A-Za-z0-9_]*$", k))])
    error_message = "gateway_upstream_secrets: keys are environment variable names."
  }
}

# Closed by default (issue 24): an internal NLB; internet-facing needs TLS and keys.
variable "gateway_scheme" {
  description = "Scheme of the gateway's NLB: internal (reachable from the VPC and its peerings) or internet-facing (needs gateway_certificate_arn, and gateway_keys unless gateway_allow_anonymous)."
  type        = string
  default     = "internal"

  validation {
    condition     = contains(["internal", "internet-facing"], var.gateway_scheme)
    error_message = "gateway_scheme: internal or internet-facing."
  }
  validation {
    condition     = var.gateway_scheme == "internal" || var.gateway_certificate_arn != ""
    error_message = "gateway_scheme = internet-facing needs gateway_certificate_arn: TLS ends at the NLB, there is no plaintext public listener."
  }
  validation {
    condition     = var.gateway_scheme == "internal" || length(var.gateway_keys) > 0 || var.gateway_allow_anonymous
    error_message = "gateway_scheme = internet-facing without gateway_keys is an open relay of your upstream quota: add keys, or set gateway_allow_anonymous = true (with gateway_anonymous_plan)."
  }
}

variable "gateway_certificate_arn" {
  description = "ACM certificate (same region) of the NLB's TLS listener on 443. Empty: a plaintext listener on 80, for an internal NLB only."
  type        = string
  default     = ""

  validation {
    condition     = var.gateway_certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.gateway_certificate_arn))
    error_message = "gateway_certificate_arn: an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)."
  }
}

variable "gateway_allow_anonymous" {
  description = "Let an internet-facing gateway serve calls without a key, each client address limited by gateway_anonymous_plan."
  type        = bool
  default     = false

  validation {
    condition     = !var.gateway_allow_anonymous || var.gateway_anonymous_plan != ""
    error_message = "gateway_allow_anonymous needs gateway_anonymous_plan: calls without a key are limited per client address."
  }
}

variable "gateway_keys" {
  description = "API keys: name, sha256 (hex SHA-256 of the key; never the key), plan (a gateway_plans name), optional origins. With keys, every call needs one."
  type = list(object({
    name    = string
    sha256  = string
    plan    = string
    origins = optional(list(string))
  }))
  default = []

  validation {
    condition     = alltrue([for k in var.gateway_keys : can(regex("^[a-f0-9]{64}$", k.sha256))])
    error_message = "gateway_keys: sha256 is the 64 lowercase hex digits of the key's SHA-256 (printf %s KEY | sha256sum), never the key."
  }
  validation {
    condition     = alltrue([for k in var.gateway_keys : contains(keys(var.gateway_plans), k.plan)])
    error_message = "gateway_keys: every plan must be defined in gateway_plans."
  }
}

variable "gateway_plans" {
  description = "Limits by plan name (the gateway's plans: requests_per_second, burst, units_per_second, units_burst, daily_units, max_connections, max_subscriptions), and the networks (gateway_networks names) a plan may use; empty: every one."
  type = map(object({
    requests_per_second = optional(number)
    burst               = optional(number)
    units_per_second    = optional(number)
    units_burst         = optional(number)
    daily_units         = optional(number)
    max_connections     = optional(number)
    max_subscriptions   = optional(number)
    networks            = optional(list(string))
  }))
  default = {}
}

variable "gateway_anonymous_plan" {
  description = "The plan (in gateway_plans) of calls without a key, per client address; empty: none."
  type        = string
  default     = ""

  validation {
    condition     = var.gateway_anonymous_plan == "" || contains(keys(var.gateway_plans), var.gateway_anonymous_plan)
    error_message = "gateway_anonymous_plan must be defined in gateway_plans."
  }
}

variable "gateway_egress_ports" {
  description = "Extra TCP ports the gateway's NetworkPolicy lets it reach; DNS, 443, Redis and the ports of the upstream URLs (a node on :8545; the chart reads them) are always open."
  type        = list(number)
  default     = []
}

# Infura-style hosts (mainnet.gw.example.com, sepolia.gw.example.com), one per network
# of the chart's config.networks (its hosts), all on the one NLB: the TLS listener's
# certificate (gateway_certificate_arn) must cover every name, as a SAN list or a
# wildcard (*.gw.example.com covers one label only: not *.mainnet.gw.example.com).
variable "gateway_dns_names" {
  description = "Host names to point at the gateway's NLB with Route 53 alias records in gateway_dns_zone_id (e.g. the hosts of the chart's config.networks, or *.gw.example.com). Empty (the default): no records."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.gateway_dns_names) == 0 || var.gateway_dns_zone_id != ""
    error_message = "gateway_dns_names needs gateway_dns_zone_id: the Route 53 hosted zone the records go in."
  }
  validation {
    condition     = alltrue([for n in var.gateway_dns_names : length(n) <= 253 && can(regex("^(\\*\\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\\.)+[a-zA-Z]{2,63}$", n))])
    error_message = "gateway_dns_names: host names (no scheme, port or path), a wildcard only as the first label (*.gw.example.com)."
  }
  validation {
    condition     = length(distinct([for n in var.gateway_dns_names : lower(n)])) == length(var.gateway_dns_names)
    error_message = "gateway_dns_names: a name is listed twice."
  }
}

variable "gateway_dns_zone_id" {
  description = "Route 53 hosted zone id (Z...) of gateway_dns_names: a public zone for an internet-facing NLB, a private one associated with the VPC for an internal one."
  type        = string
  default     = ""

  validation {
    condition     = var.gateway_dns_zone_id == "" || can(regex("^Z[A-Z0-9]{1,31}$", var.gateway_dns_zone_id))
    error_message = "gateway_dns_zone_id: a Route 53 hosted zone id (Z0123456789ABCDEFGHIJ), not a domain name."
  }
}

variable "redis_enabled" {
  description = "Create an ElastiCache (Valkey) replication group for limits and the cache tier shared by the gateway's pods. Without it each pod limits on its own."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_engine_version" {
  description = "Valkey engine version of the replication group (its parameter group is of the family valkey<major>)."
  type        = string
  default     = "8.0"

  validation {
    condition     = can(regex("^[78]\\.[0-9]+$", var.redis_engine_version))
    error_message = "redis_engine_version: a Valkey version such as 8.0."
  }
}

variable "redis_maxmemory_policy" {
  description = "maxmemory-policy of the replication group, which holds the limits and the cache tier: allkeys-lru (the answers read least recently go first; noeviction would let a full cache refuse the limiter's writes too). See the root README, Redis memory."
  type        = string
  default     = "allkeys-lru"

  validation {
    condition     = contains(["allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu"], var.redis_maxmemory_policy)
    error_message = "redis_maxmemory_policy: allkeys-lru (recommended), allkeys-lfu, volatile-lru or volatile-lfu; noeviction lets the cache tier fill the instance and stop the limits, volatile-ttl evicts the limits of keys in use first."
  }
}

variable "redis_num_cache_clusters" {
  description = "Nodes in the replication group: 1 primary plus replicas; 2 or more enables Multi-AZ automatic failover."
  type        = number
  default     = 2

  validation {
    condition     = var.redis_num_cache_clusters >= 1 && var.redis_num_cache_clusters <= 6
    error_message = "redis_num_cache_clusters: 1 to 6."
  }
}

variable "tags" {
  description = "Tags applied to every AWS resource."
  type        = map(string)
  default = {
    Project   = "infura-gateway"
    ManagedBy = "terraform"
  }
}

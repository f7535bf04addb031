variable "install_monitoring" {
  description = "Whether the chart renders its ServiceMonitor, PrometheusRule and dashboard."
  type        = bool
}

variable "vpc_cidr" {
  description = "The VPC's CIDR: where Redis is, for the NetworkPolicy's egress."
  type        = string
}

variable "egress_ports" {
  description = "Extra TCP ports the NetworkPolicy lets the gateway reach."
  type        = list(number)
  default     = []
}

variable "upstream_http_url" {
  description = "The single upstream's HTTP URL (config.upstreamHttpUrl); empty: none."
  type        = string
  default     = ""
}

variable "upstream_ws_url" {
  description = "The single upstream's websocket URL or off (config.upstreamWsUrl); empty: the chart's default."
  type        = string
  default     = ""
}

variable "upstreams" {
  description = "The upstream list of the configuration file (config.upstreams); null attributes are left out. The type of the root's gateway_upstreams."
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
}

variable "networks" {
  description = "The networks of the configuration file (config.networks), each with its upstreams; null attributes are left out. The type of the root's gateway_networks."
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
}

variable "upstream_env_allow" {
  description = "The variables the configuration file's $${VAR} references may read besides GATEWAY_* and the Infura credentials (config.envAllow): the keys of the upstreams' Secret."
  type        = list(string)
  default     = []
}

variable "upstream_secret_name" {
  description = "The Secret holding the upstreams' $${VAR} values (config.envFromSecrets); empty: none."
  type        = string
  default     = ""
}

variable "redis_address" {
  description = "host:port of Redis/Valkey (redis.address); empty: no Redis."
  type        = string
  default     = ""
}

variable "redis_secret_name" {
  description = "The Secret with the Redis AUTH token under the key password (redis.existingSecret)."
  type        = string
  default     = ""
}

variable "kubernetes_version" {
  description = "The cluster's minor version (1.33): the Pod Security Standards version the namespace enforces."
  type        = string
}

variable "scheme" {
  description = "The NLB's scheme: internal or internet-facing (service.nlb.scheme)."
  type        = string
  default     = "internal"
}

variable "certificate_arn" {
  description = "ACM certificate of the NLB's TLS listener (service.nlb.certificateArn); empty: a plaintext listener (internal only)."
  type        = string
  default     = ""
}

variable "allow_anonymous" {
  description = "Let an internet-facing NLB serve calls without a key, limited per address by anonymous_plan (service.allowAnonymous)."
  type        = bool
  default     = false
}

variable "keys" {
  description = "API keys (config.keys.entries): name, SHA-256 of the key, plan, optional browser origins."
  type = list(object({
    name    = string
    sha256  = string
    plan    = string
    origins = optional(list(string))
  }))
  default = []
}

variable "plans" {
  description = "Limits by plan name (config.plans); null attributes are left out."
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

variable "anonymous_plan" {
  description = "The plan of calls without a key, per client address (config.anonymous.plan); empty: none."
  type        = string
  default     = ""
}

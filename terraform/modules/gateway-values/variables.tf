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

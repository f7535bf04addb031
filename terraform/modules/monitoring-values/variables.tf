variable "alert_receiver" {
  description = "Where alerts go: a Slack incoming webhook (and channel), a PagerDuty Events API v2 routing key and/or an SNS topic ARN. The first of Slack, SNS, PagerDuty takes every alert; SNS next to Slack gets every alert too, PagerDuty next to either the critical ones."
  type = object({
    slack_webhook_url     = optional(string, "")
    slack_channel         = optional(string, "")
    pagerduty_routing_key = optional(string, "")
    sns_topic_arn         = optional(string, "")
  })
  sensitive = true

  validation {
    condition     = var.alert_receiver.slack_webhook_url != "" || var.alert_receiver.pagerduty_routing_key != "" || var.alert_receiver.sns_topic_arn != ""
    error_message = "alert_receiver: set slack_webhook_url, pagerduty_routing_key or sns_topic_arn, or alerts reach nobody."
  }
  validation {
    condition     = var.alert_receiver.sns_topic_arn == "" || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$", var.alert_receiver.sns_topic_arn))
    error_message = "alert_receiver.sns_topic_arn: an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)."
  }
}

variable "sns_role_arn" {
  description = "IAM role (IRSA) of Alertmanager's service account, allowed sns:Publish on alert_receiver.sns_topic_arn. Required with an SNS receiver."
  type        = string
  default     = ""

  validation {
    condition     = var.sns_role_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", var.sns_role_arn))
    error_message = "sns_role_arn: an IAM role ARN."
  }
  validation {
    condition     = var.alert_receiver.sns_topic_arn == "" || var.sns_role_arn != ""
    error_message = "sns_role_arn: an SNS receiver needs the role Alertmanager publishes with."
  }
}

variable "storage_class" {
  description = "StorageClass of the Prometheus and Alertmanager volumes (gp3, EBS CSI)."
  type        = string
  default     = "gp3"
}

variable "prometheus_storage_gib" {
  description = "Size of Prometheus's volume in GiB; retentionSize is 85 % of it, so the volume never fills before retention drops old blocks."
  type        = number
  default     = 50

  validation {
    condition     = var.prometheus_storage_gib >= 10
    error_message = "prometheus_storage_gib: at least 10."
  }
}

variable "prometheus_retention" {
  description = "How long Prometheus keeps samples (e.g. 15d); whichever of this and retentionSize is reached first drops old blocks."
  type        = string
  default     = "15d"

  validation {
    condition     = can(regex("^[0-9]+(h|d|w|y)$", var.prometheus_retention))
    error_message = "prometheus_retention: a Prometheus duration such as 15d."
  }
}

variable "alertmanager_storage_gib" {
  description = "Size of Alertmanager's volume in GiB (silences and notification log survive restarts)."
  type        = number
  default     = 2
}

variable "prometheus_url" {
  description = "Prometheus's in-cluster URL, for the Prometheus adapter (kube-prometheus-stack's Service)."
  type        = string
  default     = "http://kube-prometheus-stack-prometheus.monitoring.svc"
}

variable "hpa_metrics" {
  description = "Per-pod gauges of the gateway served on the custom metrics API (the chart's autoscaling.targetInFlightPerPod and targetWebsocketsPerPod)."
  type        = list(string)
  default     = ["gateway_requests_in_flight", "gateway_ws_client_connections"]
}

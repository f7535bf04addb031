# kube-prometheus-stack's values that Terraform decides: Prometheus and Alertmanager on
# gp3 volumes (EBS CSI add-on), retention sized to the volume, and an Alertmanager
# configuration whose default route reaches a person (Slack, PagerDuty and/or an SNS
# topic), not the "null" receiver the chart ships. A module without providers, so
# helm/tests applies it offline and checks the configuration with amtool.
locals {
  slack     = var.alert_receiver.slack_webhook_url != ""
  pagerduty = var.alert_receiver.pagerduty_routing_key != ""
  sns       = var.alert_receiver.sns_topic_arn != ""

  slack_configs = local.slack ? [merge(
    {
      api_url       = var.alert_receiver.slack_webhook_url
      send_resolved = true
      title         = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.namespace }})"
      text          = "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\nRunbook: {{ .Annotations.runbook_url }}\n{{ end }}"
    },
    var.alert_receiver.slack_channel == "" ? {} : { channel = var.alert_receiver.slack_channel },
  )] : []
  pagerduty_configs = local.pagerduty ? [{
    routing_key   = var.alert_receiver.pagerduty_routing_key
    send_resolved = true
    description   = "{{ .CommonLabels.alertname }}: {{ .CommonAnnotations.summary }}"
  }] : []

  # SNS (email, SMS, chat or a ticketing hook subscribed to the topic) publishes with
  # SigV4: credentials of the Alertmanager pods' IRSA role (sns_role_arn), in the
  # topic's region (arn:aws:sns:REGION:ACCOUNT:NAME).
  sns_configs = local.sns ? [{
    topic_arn     = var.alert_receiver.sns_topic_arn
    sigv4         = { region = split(":", var.alert_receiver.sns_topic_arn)[3] }
    send_resolved = true
    subject       = "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.namespace }})"
    message       = "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\nRunbook: {{ .Annotations.runbook_url }}\n{{ end }}"
  }] : []

  # The first receiver of Slack, SNS, PagerDuty that exists takes every alert; SNS next
  # to Slack gets every alert too, PagerDuty next to either the critical ones. A child
  # route that matches (continue or not) replaces the parent's receiver, so the default
  # is also the last child route: every alert still reaches it after a continue.
  default_receiver = local.slack ? "slack" : (local.sns ? "sns" : "pagerduty")

  alertmanager_config = {
    route = {
      receiver        = local.default_receiver
      group_by        = ["alertname", "namespace", "job"]
      group_wait      = "30s"
      group_interval  = "5m"
      repeat_interval = "4h"
      routes = concat(
        # kube-prometheus-stack's always-firing alerts: not for a person.
        [
          { receiver = "null", matchers = ["alertname = \"Watchdog\""] },
          { receiver = "null", matchers = ["alertname = \"InfoInhibitor\""] },
        ],
        local.pagerduty && local.default_receiver != "pagerduty" ? [{ receiver = "pagerduty", matchers = ["severity = \"critical\""], continue = true }] : [],
        local.sns && local.default_receiver != "sns" ? [{ receiver = "sns", continue = true }] : [],
        [{ receiver = local.default_receiver }],
      )
    }
    inhibit_rules = [{
      source_matchers = ["severity = \"critical\""]
      target_matchers = ["severity = \"warning\""]
      equal           = ["alertname", "namespace"]
    }]
    receivers = concat(
      [{ name = "null" }],
      local.slack ? [{ name = "slack", slack_configs = local.slack_configs }] : [],
      local.pagerduty ? [{ name = "pagerduty", pagerduty_configs = local.pagerduty_configs }] : [],
      local.sns ? [{ name = "sns", sns_configs = local.sns_configs }] : [],
    )
    templates = ["/etc/alertmanager/config/*.tmpl"]
  }

  volume = { for name, gib in { prometheus = var.prometheus_storage_gib, alertmanager = var.alertmanager_storage_gib } : name => {
    volumeClaimTemplate = {
      spec = {
        storageClassName = var.storage_class
        accessModes      = ["ReadWriteOnce"]
        resources        = { requests = { storage = "${gib}Gi" } }
      }
    }
  } }
}

# The Prometheus adapter serves the gateway's per-pod gauges on the custom metrics API
# (custom.metrics.k8s.io), where the HPA reads them: the pods' namespace and pod labels
# (the ServiceMonitor's) map to Kubernetes objects. Chosen over KEDA: the chart keeps a
# plain autoscaling/v2 HPA (no CRD, no second controller owning the HPA), and the
# adapter answers from the Prometheus that already scrapes the pods.
locals {
  adapter = {
    prometheus = { url = var.prometheus_url, port = 9090 }
    rules = {
      default = false
      # metricsQuery sums, not max: a pod's gauge has one series per network
      # (websocket clients of alpha and of beta), and the HPA must see the pod's total.
      custom = [for m in var.hpa_metrics : {
        seriesQuery = "${m}{namespace!=\"\",pod!=\"\",job=\"infura-gateway\"}"
        resources = { overrides = {
          namespace = { resource = "namespace" }
          pod       = { resource = "pod" }
        } }
        name         = { matches = "^${m}$", as = m }
        metricsQuery = "sum by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})"
      }]
    }
  }
}

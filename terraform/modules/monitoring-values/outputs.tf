output "documents" {
  description = "Values documents for the kube-prometheus-stack release."
  sensitive   = true
  value = [yamlencode({
    prometheus = {
      prometheusSpec = {
        retention     = var.prometheus_retention
        retentionSize = "${floor(var.prometheus_storage_gib * 0.85)}GB"
        storageSpec   = local.volume.prometheus
      }
    }
    alertmanager = merge(
      {
        config           = local.alertmanager_config
        alertmanagerSpec = { storage = local.volume.alertmanager }
      },
      # SNS: the pods take the IRSA role allowed to publish to the topic.
      local.sns ? { serviceAccount = { annotations = { "eks.amazonaws.com/role-arn" = var.sns_role_arn } } } : {},
    )
  })]
}

output "alertmanager_config" {
  description = "The Alertmanager configuration (for amtool check-config)."
  sensitive   = true
  value       = yamlencode(local.alertmanager_config)
}

output "adapter_documents" {
  description = "Values documents for the prometheus-adapter release: the custom metrics the gateway's HPA scales on."
  value       = [yamlencode(local.adapter)]
}

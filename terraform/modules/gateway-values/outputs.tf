output "documents" {
  description = "Values documents for helm_release.values, after values-eks.yaml."
  value       = local.documents
}

output "namespace_labels" {
  description = "Pod Security labels of the gateway's namespace (restricted, at the cluster's version)."
  value       = local.namespace_labels
}

output "documents" {
  description = "Values documents for helm_release.values, after values-eks.yaml."
  value       = local.documents
}

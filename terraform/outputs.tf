output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "kubeconfig_command" {
  description = "Command that adds the cluster to your kubeconfig."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "ecr_repository_url" {
  description = "ECR repository to push the gateway image to (docker push <url>:<tag>)."
  value       = aws_ecr_repository.gateway.repository_url
}

output "gateway_service_hostname" {
  description = "DNS name of the gateway's NLB (empty until the controller has provisioned it; re-run terraform refresh)."
  value       = try(data.kubernetes_service_v1.gateway.status[0].load_balancer[0].ingress[0].hostname, "")
}

output "gateway_url" {
  description = "Base URL of the gateway: https with gateway_certificate_arn (websockets: wss://<hostname>/socket2socket), else http (internal NLB)."
  value       = "${var.gateway_certificate_arn == "" ? "http" : "https"}://${try(data.kubernetes_service_v1.gateway.status[0].load_balancer[0].ingress[0].hostname, "<pending>")}"
}

output "gateway_image_digest" {
  description = "Digest of the deployed gateway image (gateway_image_tag in ECR)."
  value       = data.aws_ecr_image.gateway.image_digest
}

output "redis_endpoint" {
  description = "host:port of the ElastiCache (Valkey) primary the gateway uses for shared limits (TLS, AUTH token); empty without redis_enabled."
  value       = local.redis_address
}

output "redis_auth_token_secret_arn" {
  description = "Secrets Manager secret holding the ElastiCache AUTH token (and the address)."
  value       = try(aws_secretsmanager_secret.redis_auth_token[0].arn, "")
}

output "karpenter_node_role_name" {
  description = "IAM role of the nodes Karpenter launches (named by the EC2NodeClass)."
  value       = module.karpenter.node_iam_role_name
}

output "gateway_dns_records" {
  description = "Names of the Route 53 records pointing at the gateway's NLB (gateway_dns_names); empty without them."
  value       = sort([for r in aws_route53_record.gateway : r.fqdn])
}

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
  description = "HTTP base URL of the gateway (websockets: ws://<hostname>/socket2socket)."
  value       = "http://${try(data.kubernetes_service_v1.gateway.status[0].load_balancer[0].ingress[0].hostname, "<pending>")}"
}

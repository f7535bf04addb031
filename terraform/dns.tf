# Route 53 alias records of gateway_dns_names (the networks' Infura-style hosts) to the
# gateway's NLB; nothing without names. The AWS Load Balancer Controller creates the NLB
# from the chart's Service and tags it with the Service (service.k8s.aws/stack =
# <namespace>/<name>) and the cluster; helm_release waits for the Service's address, so
# the NLB exists when this reads it.
data "aws_lb" "gateway" {
  count = length(var.gateway_dns_names) > 0 ? 1 : 0

  tags = {
    "service.k8s.aws/stack" = "${var.gateway_namespace}/infura-gateway"
    "elbv2.k8s.aws/cluster" = module.eks.cluster_name
  }

  depends_on = [helm_release.gateway]
}

# One A alias per name (the NLB is IPv4). The gateway picks the network from the Host
# header, so every name points at the same NLB; the certificate must cover them all.
resource "aws_route53_record" "gateway" {
  for_each = toset([for n in var.gateway_dns_names : lower(n)])

  zone_id = var.gateway_dns_zone_id
  name    = each.key
  type    = "A"

  alias {
    name                   = data.aws_lb.gateway[0].dns_name
    zone_id                = data.aws_lb.gateway[0].zone_id
    evaluate_target_health = true
  }
}

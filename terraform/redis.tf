# ElastiCache (Valkey) shared by the gateway's pods: rate limits, daily quotas and a
# cache tier that hold across replicas. Private subnets only, TLS in transit, an
# AUTH token generated here and kept in Secrets Manager; only the node security group
# (managed nodes and Karpenter's, so every gateway pod) reaches it.
resource "random_password" "redis_auth_token" {
  count = var.redis_enabled ? 1 : 0

  # ElastiCache AUTH: 16 to 128 printable characters, none of / " @.
  length           = 64
  special          = true
  override_special = "!&#$^<>-"
}

resource "aws_secretsmanager_secret" "redis_auth_token" {
  count = var.redis_enabled ? 1 : 0

  name                    = "${var.cluster_name}/infura-gateway/redis-auth-token"
  description             = "AUTH token of the infura-gateway ElastiCache replication group"
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_auth_token" {
  count = var.redis_enabled ? 1 : 0

  secret_id = aws_secretsmanager_secret.redis_auth_token[0].id
  secret_string = jsonencode({
    auth_token = random_password.redis_auth_token[0].result
    address    = local.redis_address
  })
}

resource "aws_elasticache_subnet_group" "redis" {
  count = var.redis_enabled ? 1 : 0

  name       = "${var.cluster_name}-gateway-redis"
  subnet_ids = module.vpc.private_subnets
}

resource "aws_security_group" "redis" {
  count = var.redis_enabled ? 1 : 0

  name_prefix = "${var.cluster_name}-gateway-redis-"
  description = "infura-gateway ElastiCache: Redis protocol from the EKS node security group only"
  vpc_id      = module.vpc.vpc_id

  lifecycle {
    create_before_destroy = true
  }
}

# Pods use their node's security group (VPC CNI without security groups for pods).
resource "aws_vpc_security_group_ingress_rule" "redis_from_nodes" {
  count = var.redis_enabled ? 1 : 0

  security_group_id            = aws_security_group.redis[0].id
  description                  = "Redis/Valkey from the EKS nodes (gateway pods)"
  referenced_security_group_id = module.eks.node_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

# The default parameter group's volatile-lru would do (every key the gateway writes has a
# TTL), but the policy is stated here, where it cannot change under us: the instance must
# evict (noeviction lets cached answers fill it and then refuses the limiter's writes too).
# maxmemory itself follows the node type, less reserved-memory-percent (25%).
resource "aws_elasticache_parameter_group" "redis" {
  count = var.redis_enabled ? 1 : 0

  # The family in the name: a major upgrade creates the new group before the old goes.
  name        = "${var.cluster_name}-gateway-redis-valkey${split(".", var.redis_engine_version)[0]}"
  family      = "valkey${split(".", var.redis_engine_version)[0]}"
  description = "infura-gateway: limits and cache tier on one instance, evicting least recently used keys"

  parameter {
    name  = "maxmemory-policy"
    value = var.redis_maxmemory_policy
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_elasticache_replication_group" "redis" {
  count = var.redis_enabled ? 1 : 0

  replication_group_id = trimsuffix(substr("${var.cluster_name}-gateway", 0, 40), "-")
  description          = "infura-gateway: shared rate limits, quotas and cache tier"

  engine               = "valkey"
  engine_version       = var.redis_engine_version
  parameter_group_name = aws_elasticache_parameter_group.redis[0].name
  node_type            = var.redis_node_type
  port                 = 6379

  # A primary and replicas over the zones; with a replica, a failed primary is
  # replaced automatically (the gateway falls back to per-pod limits meanwhile).
  num_cache_clusters         = var.redis_num_cache_clusters
  automatic_failover_enabled = var.redis_num_cache_clusters > 1
  multi_az_enabled           = var.redis_num_cache_clusters > 1

  subnet_group_name  = aws_elasticache_subnet_group.redis[0].name
  security_group_ids = [aws_security_group.redis[0].id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = random_password.redis_auth_token[0].result
  # A new token (taint random_password) is added next to the old one, so clients that
  # still use it keep working until the pods restart with the new Secret.
  auth_token_update_strategy = "ROTATE"

  auto_minor_version_upgrade = true
  maintenance_window         = "sun:03:00-sun:04:00"
  # Counters and cached answers only: nothing to back up.
  snapshot_retention_limit = 0
}

locals {
  redis_address = var.redis_enabled ? "${aws_elasticache_replication_group.redis[0].primary_endpoint_address}:6379" : ""
}

# The token for the pods, in the gateway's namespace (the chart's redis.existingSecret).
resource "kubernetes_secret_v1" "redis" {
  count = var.redis_enabled ? 1 : 0

  metadata {
    name      = "infura-gateway-redis"
    namespace = kubernetes_namespace_v1.gateway.metadata[0].name
  }

  data = {
    password = random_password.redis_auth_token[0].result
  }
}

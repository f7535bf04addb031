# Tests of the input validation of ../variables.tf. `./task lint:tf` runs them offline:
# it copies variables.tf and this file into an empty directory (no provider, no
# module, nothing to download) and runs `terraform test` there. Every validation
# refers to variables only, so the copy validates exactly as the configuration does.

variables {
  gateway_image_tag = "v0.1.0"
  infura_project_id = "test-project"
  alert_receiver    = { slack_webhook_url = "https://hooks.slack.com/services/T000/B000/XXXX" }
}

run "defaults_are_valid" {
  command = plan
}

# The old plan (public subnets from netnum 48) with 4 zones: private subnet 3 covers
# 10.42.48.0/20, the first public subnet is 10.42.48.0/24.
run "four_zones_overlap_with_the_default_plan" {
  command = plan
  variables {
    az_count = 4
  }
  expect_failures = [var.az_count]
}

run "four_zones_with_public_subnets_moved_up" {
  command = plan
  variables {
    az_count    = 4
    subnet_plan = { private_newbits = 4, public_newbits = 8, public_offset = 64 }
  }
}

run "six_zones_do_not_fit_a_small_vpc" {
  command = plan
  variables {
    vpc_cidr = "10.0.0.0/20"
    az_count = 6
  }
  expect_failures = [var.az_count]
}

run "public_subnets_past_the_vpc" {
  command = plan
  variables {
    subnet_plan = { private_newbits = 4, public_newbits = 8, public_offset = 254 }
  }
  expect_failures = [var.az_count]
}

run "vpc_cidr_must_be_a_cidr" {
  command = plan
  variables {
    vpc_cidr = "10.42.0.0"
  }
  expect_failures = [var.vpc_cidr]
}

run "no_upstream_is_refused" {
  command = plan
  variables {
    infura_project_id = ""
  }
  expect_failures = [var.gateway_upstream_http_url]
}

run "a_node_url_is_an_upstream" {
  command = plan
  variables {
    infura_project_id         = ""
    gateway_upstream_http_url = "http://geth.ethereum.svc.cluster.local:8545"
    gateway_upstream_ws_url   = "off"
  }
}

run "an_upstream_list_is_an_upstream" {
  command = plan
  variables {
    infura_project_id = ""
    gateway_upstreams = [
      { name = "alchemy", http = "https://eth-mainnet.g.alchemy.com/v2/$${ALCHEMY_KEY}" },
      { name = "backup", http = "https://rpc.example.com", tier = "fallback", password = "$${BACKUP_PASSWORD}" },
    ]
    gateway_upstream_secrets = { ALCHEMY_KEY = "k", BACKUP_PASSWORD = "p" }
  }
}

run "list_and_url_together_are_refused" {
  command = plan
  variables {
    gateway_upstreams         = [{ name = "alchemy", http = "https://eth-mainnet.g.alchemy.com/v2/$${ALCHEMY_KEY}" }]
    gateway_upstream_http_url = "http://geth:8545"
  }
  expect_failures = [var.gateway_upstream_http_url]
}

run "a_literal_password_is_refused" {
  command = plan
  variables {
    gateway_upstreams = [{ name = "backup", http = "https://rpc.example.com", password = "hunter2" }]
  }
  expect_failures = [var.gateway_upstreams]
}

run "duplicate_upstream_names_are_refused" {
  command = plan
  variables {
    gateway_upstreams = [{ name = "a", http = "https://a.example.com" }, { name = "a", http = "https://b.example.com" }]
  }
  expect_failures = [var.gateway_upstreams]
}

run "fallbacks_only_are_refused" {
  command = plan
  variables {
    gateway_upstreams = [{ name = "a", http = "https://a.example.com", tier = "fallback" }]
  }
  expect_failures = [var.gateway_upstreams]
}

run "secret_names_are_variable_names" {
  command = plan
  variables {
    gateway_upstream_secrets = { "alchemy-key" = "k" }
  }
  expect_failures = [var.gateway_upstream_secrets]
}

run "ws_url_is_a_websocket_url" {
  command = plan
  variables {
    gateway_upstream_ws_url = "https://mainnet.infura.io"
  }
  expect_failures = [var.gateway_upstream_ws_url]
}

# An all-digit tag is a valid tag; the release passes it to Helm as a string.
run "an_all_digit_tag_is_a_tag" {
  command = plan
  variables {
    gateway_image_tag = "20250101"
  }
}

run "a_tag_with_spaces_is_refused" {
  command = plan
  variables {
    gateway_image_tag = "v1 final"
  }
  expect_failures = [var.gateway_image_tag]
}

run "kube_proxy_follows_the_cluster_version" {
  command = plan
  variables {
    kubernetes_version = "1.34"
  }
  expect_failures = [var.eks_addon_versions]
}

run "addons_are_pinned" {
  command = plan
  variables {
    eks_addon_versions = {
      "coredns"                = "latest"
      "kube-proxy"             = "v1.33.5-eksbuild.2"
      "vpc-cni"                = "v1.20.1-eksbuild.3"
      "eks-pod-identity-agent" = "v1.3.10-eksbuild.2"
      "aws-ebs-csi-driver"     = "v1.47.0-eksbuild.1"
    }
  }
  expect_failures = [var.eks_addon_versions]
}

run "every_addon_is_pinned" {
  command = plan
  variables {
    eks_addon_versions = { "kube-proxy" = "v1.33.5-eksbuild.2" }
  }
  expect_failures = [var.eks_addon_versions]
}

run "admins_are_iam_arns" {
  command = plan
  variables {
    cluster_admin_arns = ["alice"]
  }
  expect_failures = [var.cluster_admin_arns]
}

run "redis_engine_is_valkey" {
  command = plan
  variables {
    redis_engine_version = "latest"
  }
  expect_failures = [var.redis_engine_version]
}

run "redis_may_evict" {
  command = plan
  variables {
    redis_maxmemory_policy = "noeviction"
  }
  expect_failures = [var.redis_maxmemory_policy]
}

# Closed by default (issue 24, N1): internal unless asked; internet-facing needs TLS
# and keys, or an explicit allow_anonymous with a per-address plan.
run "internet_facing_without_a_certificate_is_refused" {
  command = plan
  variables {
    gateway_scheme = "internet-facing"
    gateway_plans  = { free = { requests_per_second = 10 } }
    gateway_keys   = [{ name = "alice", sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", plan = "free" }]
  }
  expect_failures = [var.gateway_scheme]
}

run "internet_facing_without_keys_is_refused" {
  command = plan
  variables {
    gateway_scheme          = "internet-facing"
    gateway_certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
  }
  expect_failures = [var.gateway_scheme]
}

run "internet_facing_with_tls_and_keys" {
  command = plan
  variables {
    gateway_scheme          = "internet-facing"
    gateway_certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
    gateway_plans           = { free = { requests_per_second = 10, burst = 20 } }
    gateway_keys            = [{ name = "alice", sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", plan = "free" }]
  }
}

run "internet_facing_anonymous_with_a_plan" {
  command = plan
  variables {
    gateway_scheme          = "internet-facing"
    gateway_certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
    gateway_allow_anonymous = true
    gateway_plans           = { anonymous = { requests_per_second = 2, burst = 5 } }
    gateway_anonymous_plan  = "anonymous"
  }
}

run "allow_anonymous_needs_a_plan" {
  command = plan
  variables {
    gateway_allow_anonymous = true
  }
  expect_failures = [var.gateway_allow_anonymous]
}

run "certificate_must_be_an_acm_arn" {
  command = plan
  variables {
    gateway_certificate_arn = "my-cert"
  }
  expect_failures = [var.gateway_certificate_arn]
}

run "key_hash_not_a_key" {
  command = plan
  variables {
    gateway_plans = { free = {} }
    gateway_keys  = [{ name = "alice", sha256 = "my-secret-key", plan = "free" }]
  }
  expect_failures = [var.gateway_keys]
}

run "key_plan_must_exist" {
  command = plan
  variables {
    gateway_keys = [{ name = "alice", sha256 = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", plan = "gold" }]
  }
  expect_failures = [var.gateway_keys]
}

# Alerts reach a person (issue 24, N3).
run "monitoring_without_a_receiver_is_refused" {
  command = plan
  variables {
    alert_receiver = {}
  }
  expect_failures = [var.alert_receiver]
}

run "no_monitoring_needs_no_receiver" {
  command = plan
  variables {
    install_monitoring = false
    alert_receiver     = {}
  }
}

run "pagerduty_alone_is_a_receiver" {
  command = plan
  variables {
    alert_receiver = { pagerduty_routing_key = "0123456789abcdef0123456789abcdef" }
  }
}

run "sns_alone_is_a_receiver" {
  command = plan
  variables {
    alert_receiver = { sns_topic_arn = "arn:aws:sns:eu-west-1:123456789012:gateway-alerts" }
  }
}

run "sns_topic_must_be_an_arn" {
  command = plan
  variables {
    alert_receiver = { sns_topic_arn = "gateway-alerts" }
  }
  expect_failures = [var.alert_receiver]
}

run "slack_webhook_must_be_https" {
  command = plan
  variables {
    alert_receiver = { slack_webhook_url = "http://hooks.example.com/x" }
  }
  expect_failures = [var.alert_receiver]
}

run "retention_is_a_duration" {
  command = plan
  variables {
    prometheus_retention = "15 days"
  }
  expect_failures = [var.prometheus_retention]
}

# DNS for Infura-style hosts (one name per network, or a wildcard): off by default;
# names need the hosted zone, and are host names (a wildcard only as the first label).
run "dns_records_for_network_hosts" {
  command = plan
  variables {
    gateway_scheme          = "internet-facing"
    gateway_certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
    gateway_allow_anonymous = true
    gateway_anonymous_plan  = "anonymous"
    gateway_plans           = { anonymous = { requests_per_second = 5 } }
    gateway_dns_zone_id     = "Z0123456789ABCDEFGHIJ"
    gateway_dns_names       = ["mainnet.gw.example.com", "sepolia.gw.example.com", "*.mainnet.gw.example.com"]
  }
}

run "dns_names_without_a_zone_are_refused" {
  command = plan
  variables {
    gateway_dns_names = ["mainnet.gw.example.com"]
  }
  expect_failures = [var.gateway_dns_names]
}

run "dns_name_with_a_scheme_is_refused" {
  command = plan
  variables {
    gateway_dns_zone_id = "Z0123456789ABCDEFGHIJ"
    gateway_dns_names   = ["https://mainnet.gw.example.com"]
  }
  expect_failures = [var.gateway_dns_names]
}

run "wildcard_inside_a_name_is_refused" {
  command = plan
  variables {
    gateway_dns_zone_id = "Z0123456789ABCDEFGHIJ"
    gateway_dns_names   = ["mainnet.*.example.com"]
  }
  expect_failures = [var.gateway_dns_names]
}

run "duplicate_dns_names_are_refused" {
  command = plan
  variables {
    gateway_dns_zone_id = "Z0123456789ABCDEFGHIJ"
    gateway_dns_names   = ["mainnet.gw.example.com", "MAINNET.gw.example.com"]
  }
  expect_failures = [var.gateway_dns_names]
}

run "bad_zone_id_is_refused" {
  command = plan
  variables {
    gateway_dns_zone_id = "example.com"
    gateway_dns_names   = ["mainnet.gw.example.com"]
  }
  expect_failures = [var.gateway_dns_zone_id]
}

# Several networks: the chart's config.networks, checked here as the chart and the
# gateway check it.
run "networks_are_an_upstream" {
  command = plan
  variables {
    infura_project_id = ""
    gateway_networks = [
      { name = "mainnet", chain_id = 1, aliases = ["eth"], hosts = ["mainnet.gw.example.com"], default = true,
      upstreams = [{ name = "infura", http = "https://mainnet.infura.io/v3/$${INFURA_KEY}" }] },
      { name = "sepolia", chain_id = 11155111, hosts = ["sepolia.gw.example.com"],
      upstreams = [{ name = "infura", http = "https://sepolia.infura.io/v3/$${INFURA_KEY}" }] },
    ]
    gateway_plans            = { free = { requests_per_second = 10, networks = ["sepolia"] } }
    gateway_upstream_secrets = { INFURA_KEY = "k" }
  }
}

run "network_name_not_url_safe_is_refused" {
  command = plan
  variables {
    gateway_networks = [{ name = "Mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com" }] }]
  }
  expect_failures = [var.gateway_networks]
}

run "network_named_like_a_route_is_refused" {
  command = plan
  variables {
    gateway_networks = [{ name = "ws", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com" }] }]
  }
  expect_failures = [var.gateway_networks]
}

run "network_alias_twice_is_refused" {
  command = plan
  variables {
    gateway_networks = [
      { name = "mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com" }] },
      { name = "sepolia", chain_id = 11155111, aliases = ["mainnet"], upstreams = [{ name = "a", http = "https://b.example.com" }] },
    ]
  }
  expect_failures = [var.gateway_networks]
}

run "network_host_twice_is_refused" {
  command = plan
  variables {
    gateway_networks = [
      { name = "mainnet", chain_id = 1, hosts = ["gw.example.com"], upstreams = [{ name = "a", http = "https://a.example.com" }] },
      { name = "sepolia", chain_id = 11155111, hosts = ["GW.example.com"], upstreams = [{ name = "a", http = "https://b.example.com" }] },
    ]
  }
  expect_failures = [var.gateway_networks]
}

run "network_without_a_chain_id_is_refused" {
  command = plan
  variables {
    gateway_networks = [{ name = "mainnet", chain_id = 0, upstreams = [{ name = "a", http = "https://a.example.com" }] }]
  }
  expect_failures = [var.gateway_networks]
}

run "network_of_fallbacks_only_is_refused" {
  command = plan
  variables {
    gateway_networks = [{ name = "mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com", tier = "fallback" }] }]
  }
  expect_failures = [var.gateway_networks]
}

run "network_literal_password_is_refused" {
  command = plan
  variables {
    gateway_networks = [{ name = "mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com", password = "hunter2" }] }]
  }
  expect_failures = [var.gateway_networks]
}

run "networks_and_upstreams_together_are_refused" {
  command = plan
  variables {
    gateway_networks  = [{ name = "mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com" }] }]
    gateway_upstreams = [{ name = "b", http = "https://b.example.com" }]
  }
  expect_failures = [var.gateway_upstreams]
}

run "networks_and_url_together_are_refused" {
  command = plan
  variables {
    gateway_networks          = [{ name = "mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com" }] }]
    gateway_upstream_http_url = "http://geth:8545"
  }
  expect_failures = [var.gateway_upstream_http_url]
}

run "plan_of_an_unknown_network_is_refused" {
  command = plan
  variables {
    gateway_networks = [{ name = "mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com" }] }]
    gateway_plans    = { free = { requests_per_second = 10, networks = ["holesky"] } }
  }
  expect_failures = [var.gateway_networks]
}

run "a_password_in_an_upstream_url_is_refused" {
  command = plan
  variables {
    gateway_upstreams = [{ name = "backup", http = "https://user:hunter2@rpc.example.com" }]
  }
  expect_failures = [var.gateway_upstreams]
}

run "a_provider_key_in_an_upstream_url_is_refused" {
  command = plan
  variables {
    gateway_upstreams = [{ name = "alchemy", http = "https://eth-mainnet.g.alchemy.com/v2/abcdefghijklmnopqrstuvwxyz", ws = "wss://eth-mainnet.g.alchemy.com/v2/$${ALCHEMY_KEY}" }]
  }
  expect_failures = [var.gateway_upstreams]
}

run "a_key_in_the_single_upstream_url_is_refused" {
  command = plan
  variables {
    gateway_upstream_http_url = "https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef"
  }
  expect_failures = [var.gateway_upstream_http_url]
}

run "a_password_in_a_network_upstream_url_is_refused" {
  command = plan
  variables {
    gateway_networks = [{ name = "mainnet", chain_id = 1, upstreams = [{ name = "a", http = "https://a.example.com", ws = "wss://:hunter2@a.example.com" }] }]
  }
  expect_failures = [var.gateway_networks]
}

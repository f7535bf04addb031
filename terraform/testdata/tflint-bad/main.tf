# Deliberately bad Terraform: `task lint:tf` asserts tflint rejects it, so a
# tflint that silently checks nothing cannot pass CI.
terraform {
  required_version = ">= 1.10.0"
}

variable "untyped" {}

module "vpc" {
  source = "terraform-aws-modules/vpc/aws"
}

output "Bad-Name" {
  value = "x"
}

resource "aws_ecr_repository" "gateway" {
  name = var.ecr_repository_name

  # A tag always means the same image: deploys and rollbacks are reproducible.
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "AES256"
  }
}

resource "aws_ecr_lifecycle_policy" "gateway" {
  repository = aws_ecr_repository.gateway.name

  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Expire untagged images (superseded multi-arch manifests, failed pushes)"
      selection = {
        tagStatus   = "untagged"
        countType   = "sinceImagePushed"
        countUnit   = "days"
        countNumber = var.ecr_untagged_expiry_days
      }
      action = { type = "expire" }
    }]
  })
}

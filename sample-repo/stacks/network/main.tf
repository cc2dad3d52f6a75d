terraform {
  required_version = ">= 1.4"
}

locals {
  # One subnet per zone, carved out of the network's range in order.
  subnets = { for index, zone in var.zones : zone => cidrsubnet(var.cidr, 4, index) }
}

resource "terraform_data" "network" {
  input = {
    name = "${var.environment}-network"
    cidr = var.cidr
  }
}

resource "terraform_data" "subnet" {
  for_each = local.subnets

  input = {
    name    = "${var.environment}-${each.key}"
    cidr    = each.value
    network = terraform_data.network.output.name
  }
}

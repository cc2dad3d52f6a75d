terraform {
  required_version = ">= 1.4"
}

variable "flags" {
  type = map(object({
    enabled = bool
    rollout = number
  }))
  description = "Flag name to its state and rollout percentage."
}

module "flag" {
  source   = "../modules/flag"
  for_each = var.flags

  name    = each.key
  enabled = each.value.enabled
  rollout = each.value.rollout
}

output "flags" {
  value = { for name, flag in module.flag : name => flag.state }
}

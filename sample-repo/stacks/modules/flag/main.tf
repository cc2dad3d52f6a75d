variable "name" {
  type = string
}

variable "enabled" {
  type = bool
}

variable "rollout" {
  type        = number
  description = "Share of users who get the flag, in percent."

  validation {
    condition     = var.rollout >= 0 && var.rollout <= 100
    error_message = "rollout is a percentage: 0 to 100."
  }
}

resource "terraform_data" "flag" {
  input = {
    name    = var.name
    enabled = var.enabled
    rollout = var.enabled ? var.rollout : 0
  }
}

output "state" {
  value = terraform_data.flag.output
}

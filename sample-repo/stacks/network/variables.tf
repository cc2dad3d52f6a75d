variable "environment" {
  type        = string
  description = "Name prefix of everything this stack manages."
}

variable "cidr" {
  type        = string
  description = "Address range of the network."

  validation {
    condition     = can(cidrhost(var.cidr, 0))
    error_message = "cidr must be an IPv4 range such as 10.0.0.0/16."
  }
}

variable "zones" {
  type        = list(string)
  description = "Zones that get one subnet each."
}

output "network" {
  value = terraform_data.network.output
}

output "subnets" {
  value = { for zone, subnet in terraform_data.subnet : zone => subnet.output.cidr }
}

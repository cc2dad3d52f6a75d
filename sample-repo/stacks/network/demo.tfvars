cidr  = "10.40.0.0/16"
zones = ["zone-a", "zone-b", "zone-c"]

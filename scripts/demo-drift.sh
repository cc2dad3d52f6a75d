#!/usr/bin/env bash
# Simulates someone changing the demo's infrastructure by hand, outside Git: the recorded
# input of the network stack's `terraform_data.network` is edited in its state. The next
# drift plan (every two minutes in the sample) reports the stack Drifted, with the address.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${1:-.demo}/state/stacks/network/terraform.tfstate"
if [ ! -f "$state" ]; then
  echo "no state at $state: start \`make run\` and wait for stack/network to apply" >&2
  exit 1
fi
python3 - "$state" <<'PY'
import json, sys
path = sys.argv[1]
with open(path) as f:
    state = json.load(f)
for resource in state["resources"]:
    if (resource["type"], resource["name"]) == ("terraform_data", "network"):
        value = resource["instances"][0]["attributes"]["input"]["value"]
        value["cidr"] = "192.168.0.0/16"
state["serial"] += 1
with open(path, "w") as f:
    json.dump(state, f, indent=2)
print(f"changed terraform_data.network by hand in {path}")
PY

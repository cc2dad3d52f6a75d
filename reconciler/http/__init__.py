"""What the daemon serves over HTTP: `/metrics`, the probes and the webhooks."""

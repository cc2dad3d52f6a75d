"""The operator's guardrails (DESIGN §8): the Policy file, its pure evaluation, and the hook
that applies it to each loaded desired state."""

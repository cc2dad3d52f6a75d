"""reconciler: a GitOps reconciler for tasks and OpenTofu/Terraform stacks declared in Git."""

__version__ = "0.1.0"

"""The daemon: the reconcile cycle as a tuple of stages over one cycle context (`cycle`,
`core`), the source sync and destroy guard those stages use, status publishing, and the loops
that drive cycles (DESIGN §1)."""

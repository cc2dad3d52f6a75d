"""The daemon: the reconcile cycle (`core`), status publishing, and the loops that drive cycles
(DESIGN §1)."""

"""What each kind of entry is and does; `base.REGISTRY` is the one list of kinds."""

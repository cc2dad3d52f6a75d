"""Where runs go: the port (`base`), the adapters by name (`registry`), and one package per
adapter (`local`, `kubernetes`), which owns its flags and settings (its `adapter` module)."""

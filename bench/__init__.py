"""Benchmarks: `python -m bench` runs every module here and prints medians (nothing asserted)."""

"""Benchmarks: `python -m bench` runs every module here and prints medians (nothing asserted)."""

import os


def sizes(default: str) -> list[int]:
    """The repository sizes to measure: BENCH_SIZES (comma-separated entry counts), else
    `default`."""
    return [int(s) for s in os.environ.get("BENCH_SIZES", default).split(",")]

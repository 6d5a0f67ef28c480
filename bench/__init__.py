"""Benchmarks: tensorq against what a user would do instead, measured side by side in one run."""

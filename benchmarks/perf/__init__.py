"""Measuring scripts: each prints figures measured side by side in one run
(`python -m benchmarks.perf.<name> --help`)."""

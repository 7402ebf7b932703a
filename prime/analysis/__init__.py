"""Analysis of runs: energy and latency (counting, cost models, reports)."""

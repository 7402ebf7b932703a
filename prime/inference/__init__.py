"""Running trained networks: evaluation, early exit, read-noise robustness."""

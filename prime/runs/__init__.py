"""Runs: configuration, run directories, training, data parallelism, sweeps, reproductions."""

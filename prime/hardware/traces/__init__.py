"""Chip conductance traces: the HDF5 format, importers of measured matrices, synthesis, plots."""

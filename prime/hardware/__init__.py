"""The chip: device models, conductance traces (format, importers, synthesis, plots), fitting,
trace replay and the read path from cells to numbers.
"""

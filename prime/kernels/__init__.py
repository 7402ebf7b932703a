"""Native and fused compute kernels: the C build, the LIF scans, sparse convolutions, memory
tricks.
"""

"""Spiking networks on the chip: supermasks, memristor layers, neurons, the network, named models,
the PRIME reference.
"""

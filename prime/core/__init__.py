"""Foundation: errors, registries, atomic file I/O, tables and figures. Imports nothing else of
prime.
"""

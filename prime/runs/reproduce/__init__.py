"""Reproductions of the papers' results (``prime reproduce``): pipelines and their reports."""

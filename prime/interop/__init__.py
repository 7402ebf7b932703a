"""Interoperability: NIR export and import, chip programming files, the NeuroBench harness."""

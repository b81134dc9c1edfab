"""Data: reference photographs, proxy synthesis, adapters for real datasets, splits, manifest."""

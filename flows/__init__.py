"""Prefect flows: orchestration over the library steps in mint_iqa."""

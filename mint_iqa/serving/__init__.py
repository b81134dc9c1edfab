"""Serving: the MLflow pyfunc model and its helpers."""

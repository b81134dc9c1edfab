"""Serving: the MLflow pyfunc model and its helpers."""

PARAMS = {
    "explain": True,
    "maps": False,
    "words": False,
}  # the served model's inference parameters and their defaults
